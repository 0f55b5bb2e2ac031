"""The one bridge from :func:`hfvision.utils.config_parser.parse_config` to the command line's error contract.

A subcommand whose flags come from config dataclasses registers itself with ``add_help=False`` and
``passthrough=True`` (its arguments reach it unparsed, so ``hfvision --help`` imports no config module) and parses
them with :func:`parse_command` in its ``check`` (or handler): a config file that cannot be used is a one-line failure
(exit 1), a value the config refuses a one-line usage error in flag words (exit 2).
"""

from __future__ import annotations

import contextlib
from typing import Any

from ._checks import USAGE, CLIError


@contextlib.contextmanager
def config_errors(config_class):
    """Turn the errors of parsing or building ``config_class`` into the command line's one-line errors."""
    from ..utils.config_parser import ConfigError, in_flag_words

    try:
        yield
    except ConfigError as err:
        raise CLIError(str(err)) from None
    except ValueError as err:  # "max_batch_size=0 must be >= 1" -> "--max-batch-size 0 must be >= 1"
        raise CLIError(in_flag_words(str(err), config_class), USAGE) from None


def parse_command(config_class, argv: list[str], prog: str, **kwargs: Any):
    """:func:`~hfvision.utils.config_parser.parse_config` with the command line's errors (see the module)."""
    from ..utils.config_parser import parse_config

    with config_errors(config_class):
        return parse_config(config_class, argv, prog, **kwargs)


def add_config_command(sub, name: str, *, help: str, description: str | None, run, check=None):
    """Register subcommand ``name`` whose flags (and ``--help``) come from ``parse_config`` when it runs."""
    parser = sub.add_parser(name, add_help=False, help=help, description=description)
    parser.set_defaults(func=run, check=check, passthrough=True)
    return parser
