"""Entry point of the ``hfvision`` console script.

Subcommands are discovered: every module in ``hfvision.cli`` (except this one) that defines
``register(subparsers)`` adds its parser and sets ``func`` (and optionally ``check``, the cheap validation run before
``func`` and before any heavy import). Modules import heavy libraries inside their handlers so ``hfvision --help``
stays fast.

The contract every subcommand keeps (see ``hfvision.cli._checks``): a usage error is one line and exit code 2; any
other failure is one line saying what failed and the fix, exit code 1; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..utils.logging import configure_library_logging, enable_cli_logging
from ._checks import USAGE, CLIError, HelpFormatter, one_line

GLOBAL_FLAGS = {"--debug", "--verbose", "-v"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``hfvision CMD: error: ... (see hfvision CMD --help)``), exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``hfvision`` parser with every subcommand; with ``command`` naming a subcommand module, only that module's
    parsers (``hfvision train ...`` does not import the serving stack to build ``serve``'s flags)."""
    from .. import __version__

    parser = ArgumentParser(prog="hfvision", description="Hugging Face-native vision: classify, personalise, ship.")
    parser.add_argument("--version", action="version", version=f"hfvision {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging (accepted anywhere in the line)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (accepted anywhere)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import __path__ as cli_path

    names = [
        info.name
        for info in sorted(pkgutil.iter_modules(cli_path), key=lambda m: m.name)
        if info.name != "main" and not info.name.startswith("_")
    ]
    if command in names:
        names = [command]
    for name in names:
        module = importlib.import_module(f"{__package__}.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _split_global_flags(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """``--debug`` / ``--verbose`` may follow the subcommand; take them out wherever they are (before ``--``)."""
    flags = {"debug": False, "verbose": False}
    rest = []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in GLOBAL_FLAGS:
            flags["debug" if arg == "--debug" else "verbose"] = True
        else:
            rest.append(arg)
    return rest, flags


def main(argv: list[str] | None = None) -> int:
    argv, flags = _split_global_flags(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    if command is not None and getattr(args, "command", None) != command:  # e.g. `models` lives in generate.py
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        prog = f"hfvision {args.command}" if getattr(args, "command", None) else "hfvision"
        parser.exit(USAGE, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)\n")
    args.extra_argv = extra
    args.verbose, args.debug = flags["verbose"] or args.verbose, flags["debug"] or args.debug
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE
    enable_cli_logging(args.verbose)
    name = f"hfvision {args.command}"
    try:
        check = getattr(args, "check", None)
        if check is not None:
            check(args)  # cheap validation: before any model, dataset or heavy library loads
        configure_library_logging(args.verbose)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - the CLI boundary: every failure becomes one line
        if args.debug:
            raise
        code = err.code if isinstance(err, CLIError) else 1
        hint = "" if isinstance(err, (CLIError, OSError, ValueError, ImportError)) else " (add --debug for details)"
        print(f"{name}: error: {one_line(err)}{hint}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
