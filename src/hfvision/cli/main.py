"""Entry point of the ``hfvision`` console script.

Subcommands are discovered: every module in ``hfvision.cli`` (except this one) that defines
``register(subparsers)`` adds its parser and sets ``func``. Modules import heavy libraries inside
their handlers so ``hfvision --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..utils.logging import enable_cli_logging


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="hfvision", description="Hugging Face-native vision: classify, personalise, ship."
    )
    parser.add_argument("--version", action="version", version=f"hfvision {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import __path__ as cli_path

    for info in sorted(pkgutil.iter_modules(cli_path), key=lambda m: m.name):
        if info.name in {"main"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    enable_cli_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as err:
        # One-line reason for user errors; tracebacks only with --verbose.
        if args.verbose:
            raise
        print(f"hfvision {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
