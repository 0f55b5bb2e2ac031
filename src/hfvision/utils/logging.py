"""Library logging: every module logs through ``hfvision.<module>`` loggers, never ``print``.

The command line adds one handler (:func:`enable_cli_logging`) that every library's messages go through: Python
warnings and the loggers of transformers, diffusers, accelerate, huggingface_hub, ... are routed to it, each distinct
message is shown once, and ANSI colour codes are removed when stderr is not a terminal.
"""

from __future__ import annotations

import functools
import importlib.abc
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


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``hook(module)`` right after the module ``name`` is first imported (one shot), so configuring a library's
    logging costs nothing when the command never imports it."""

    def __init__(self, name: str, hook):
        self.name, self.hook = name, hook

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        real, hook = spec.loader, self.hook

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                real.exec_module(module)
                module.__loader__ = module.__spec__.loader = real
                hook(module)

        spec.loader = Loader()
        return spec


def _quiet(lib_logging, handler: logging.Handler | None, verbose: bool, name: str) -> None:
    lib_logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    lib_logging.disable_default_handler()
    if not verbose:
        lib_logging.disable_progress_bar()  # loading bars; our own bars show the long steps
    if handler is not None and handler not in logging.getLogger(name).handlers:
        logging.getLogger(name).addHandler(handler)


def configure_library_logging(verbose: bool = False) -> None:
    """Route transformers' and diffusers' loggers through the CLI handler and keep them quiet: warnings only (INFO
    with ``verbose``), no nested "Loading weights" / "Loading pipeline components" bars.

    A library not imported yet is configured right after its first import (importing it here would cost seconds
    to commands that never use it).
    """
    handler = _cli_handler()
    for name in ("transformers", "diffusers"):
        module = f"{name}.utils.logging"
        hook = functools.partial(_quiet, handler=handler, verbose=verbose, name=name)
        if module in sys.modules:
            hook(sys.modules[module])
        elif importlib.util.find_spec(name) is not None:
            sys.meta_path[:] = [f for f in sys.meta_path if not (isinstance(f, _AfterImport) and f.name == module)]
            sys.meta_path.insert(0, _AfterImport(module, hook))
    for name in ("accelerate", "huggingface_hub", "peft", "datasets", "timm"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
