"""Library logging: every module logs through ``hfvision.<module>`` loggers, never ``print``."""

from __future__ import annotations

import logging

_ROOT = "hfvision"


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the ``hfvision`` logger or one of its children.

    Args:
        name (`str`, *optional*):
            Module name (``__name__``); names outside the package are nested under ``hfvision``.
    """
    if not name:
        return logging.getLogger(_ROOT)
    if name == _ROOT or name.startswith(_ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{_ROOT}.{name}")


def enable_cli_logging(verbose: bool = False) -> None:
    """Show hfvision's INFO (or DEBUG) messages on stderr; used by the command line only."""
    logger = logging.getLogger(_ROOT)
    if not any(getattr(h, "_hfvision_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._hfvision_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
