"""Library logging: every module logs through ``hfvision.<module>`` loggers, never ``print``.

The command line adds one handler (:func:`enable_cli_logging`) that every library's messages go through: Python
warnings and the loggers of transformers, diffusers, accelerate, huggingface_hub, ... are routed to it, each distinct
message is shown once, and ANSI colour codes are removed when stderr is not a terminal.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys

_ROOT = "hfvision"
#: third-party loggers routed through the CLI handler
LIBRARIES = ("transformers", "diffusers", "accelerate", "huggingface_hub", "peft", "datasets", "timm", "py.warnings")
#: known messages that say nothing a CLI user can act on (shown with --verbose)
NOISE = (
    "pin_memory",  # torch DataLoader on a CPU-only machine, once per loader
    "were not passed to `accelerate launch`",
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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


class _OncePlain(logging.Filter):
    """Drop repeated messages and known noise; strip ANSI codes when the stream is not a terminal."""

    def __init__(self, handler: logging.StreamHandler, verbose: bool):
        super().__init__()
        self.handler, self.verbose, self.seen = handler, verbose, set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not self.verbose and record.levelno < logging.ERROR and any(n in message for n in NOISE):
            return False
        if record.name == "py.warnings" and not self.verbose:  # "file:line: Category: text" + a source line
            message = message.splitlines()[0].split(": ", 1)[-1] if message else message
        key = (record.name, record.levelno, message)
        if key in self.seen:
            return False
        self.seen.add(key)
        stream = getattr(self.handler, "stream", None)
        if not (stream is not None and hasattr(stream, "isatty") and stream.isatty()):
            message = _ANSI.sub("", message)
        record.msg, record.args = message, None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (tests and tools swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property always answers sys.stderr
        pass

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = sys.modules.get("tqdm")
        if tqdm is None or not getattr(tqdm.tqdm, "_instances", None):
            return super().emit(record)
        try:  # a progress bar is on screen: print above it instead of inside it
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _cli_handler() -> logging.Handler | None:
    for h in logging.getLogger(_ROOT).handlers:
        if getattr(h, "_hfvision_cli", False):
            return h
    return None


def enable_cli_logging(verbose: bool = False) -> None:
    """Show hfvision's warnings (with ``verbose``: INFO and DEBUG too) on stderr, once each; CLI only.

    Args:
        verbose (`bool`, *optional*, defaults to `False`): also show hfvision's INFO/DEBUG messages and the
            third-party INFO messages and known noise.
    """
    handler = _cli_handler()
    if handler is None:
        handler = _StderrHandler()
        handler._hfvision_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    handler.filters = [_OncePlain(handler, verbose)]
    logging.captureWarnings(True)
    for name in (_ROOT, *LIBRARIES):
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logging.getLogger(_ROOT).setLevel(logging.DEBUG if verbose else logging.WARNING)


def configure_library_logging(verbose: bool = False) -> None:
    """Route the installed libraries' loggers through the CLI handler and keep them quiet: warnings only (INFO with
    ``verbose``), no nested "Loading weights" / "Loading pipeline components" bars.

    Imports the libraries' logging modules (transformers' pulls in torch): call it after the cheap checks.
    """
    handler = _cli_handler()
    level = logging.INFO if verbose else logging.WARNING
    for name in ("transformers", "diffusers"):
        if importlib.util.find_spec(name) is None:
            continue
        lib_logging = importlib.import_module(f"{name}.utils.logging")
        lib_logging.set_verbosity(level)
        lib_logging.disable_default_handler()
        if not verbose:
            lib_logging.disable_progress_bar()  # loading bars; our own bars show the long steps
        if handler is not None and handler not in logging.getLogger(name).handlers:
            logging.getLogger(name).addHandler(handler)
    for name in ("accelerate", "huggingface_hub", "peft", "datasets", "timm"):
        logging.getLogger(name).setLevel(level)
