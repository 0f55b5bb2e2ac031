"""One way to turn command-line flags (and a YAML file) into typed config dataclasses: :func:`parse_config`.

Every ``hfvision`` command and example script parses its options here. Flags are generated from the dataclass fields
the way transformers' ``HfArgumentParser`` generates them (``--field_name`` and ``--field-name``, the ``aliases`` in a
field's metadata, ``--flag [BOOL]`` for booleans and ``--no_flag`` for those that default to true, choices from
``Literal`` and ``Enum`` types, ``nargs="+"`` for lists), so a script written for ``HfArgumentParser`` keeps its
command line. The flags are built here rather than by ``HfArgumentParser`` itself because importing transformers
takes about 1.2 s, and a usage error must come back within 2 s (``hfvision serve --port -1``); a test checks that
both build the same flags for every hfvision config.

The help text of each flag is the field's ``metadata["help"]``, with its default shown once. ``--config run.yaml``
sets any field (keys are field names) and flags given beside it win. Fields marked ``metadata={"advanced": True}``
(or left out of ``visible``) are hidden from ``--help`` and listed by ``--help-all``. Usage errors are one line and
exit code 2, like every ``hfvision`` command.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Options:
...     size: int = field(default=512, metadata={"help": "output side in pixels"})
>>> parse_config(Options, ["--size", "256"]).size
256
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import enum
import functools
import importlib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
USAGE_ERROR = 2
#: metadata keys that are hfvision's own (the other keys of a field's metadata are argparse keyword arguments)
_OWN_METADATA = ("aliases", "advanced")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names the file or option and the fix."""


@dataclasses.dataclass(frozen=True)
class Switch:
    """A flag without a value that sets a config field to one value, e.g. ``--strict`` for ``bad_images="error"``.

    Args:
        flag (`str`): the flag, e.g. ``"--strict"``.
        field (`str`): the config field it sets.
        value (`Any`): the value it sets.
        help (`str`): its help text.
    """

    flag: str
    field: str
    value: Any
    help: str


#: ``--strict``: stop at the first unreadable image (the configs' ``bad_images="error"``); the one spelling of that
#: policy on every command that reads images (``classify`` and ``data prepare`` have a ``--strict`` flag of their own)
STRICT_IMAGES = Switch(
    "--strict",
    "bad_images",
    "error",
    "stop at the first unreadable image (default: skip each one with a warning and report the count)",
)


@dataclasses.dataclass(frozen=True)
class CompatFlags:
    """Flags accepted so that another tool's command lines run unchanged (listed by ``--help-all`` only).

    Args:
        flags_class (`type`): a dataclass with one field per accepted flag.
        apply (`callable`): ``apply(flags, values) -> values`` folds the parsed ``flags_class`` instance into the
            config's keyword ``values`` (or raises `ValueError` for a flag it refuses).
    """

    flags_class: type
    apply: Callable[[Any, dict], dict]


def option(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with its flag's help text (what transformers' ``HfArg`` does, without importing it).

    ``default_factory=`` is passed to `dataclasses.field`; other keywords (``aliases``, ``choices``, ``advanced``)
    join the metadata.

    >>> @dataclasses.dataclass
    ... class Options:
    ...     rank: int = option(4, "LoRA rank")
    >>> dataclasses.fields(Options)[0].metadata["help"]
    'LoRA rank'
    """
    factory = metadata.pop("default_factory", dataclasses.MISSING)
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, **metadata})


# --- YAML ---------------------------------------------------------------------------------------------------------


def load_yaml_options(path: str | os.PathLike, config_class: type | None = None) -> dict[str, Any]:
    """Read a YAML mapping of option names to values (the one YAML loader of hfvision's configs).

    Args:
        path (`str` or `os.PathLike`): the YAML file.
        config_class (`type`, *optional*): a dataclass; keys that are not among its init fields are an error naming
            the closest field.

    Raises:
        `ConfigError`: missing file, invalid YAML, not a mapping, or an unknown key.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {path} is not valid YAML ({first})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value, not {type(values).__name__}")
    if config_class is not None:
        check_known_keys(values, config_class, source=str(path))
    return values


def check_known_keys(values: dict[str, Any], config_class: type, source: str) -> None:
    """Refuse keys that are not init fields of ``config_class``, suggesting the closest one."""
    names = [f.name for f in dataclasses.fields(config_class) if f.init]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: unknown option {key!r}{hint}")


# --- flags from dataclass fields (HfArgumentParser's rules) ----------------------------------------------------------


def string_to_bool(text: str | bool) -> bool:
    """``yes/no, true/false, t/f, y/n, 1/0`` (any case) as a bool; the value type of boolean flags."""
    if isinstance(text, bool):
        return text
    if text.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if text.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false (yes/no, 1/0)")


def _choice_type(choices: Sequence) -> Callable[[str], Any]:
    """The value type of a flag with choices: the choice whose ``str`` is the text (enums, ints), else the text."""
    by_text = {str(choice): choice for choice in choices}

    def choice(text: str):
        return by_text.get(text, text)

    return choice


def _flag_type(kind: Any, name: str) -> Any:
    """The one type a field's flag converts to: ``X`` of ``X | None``; the non-``str`` side of ``X | str``."""
    if typing.get_origin(kind) not in (typing.Union, types.UnionType):
        return kind
    members = typing.get_args(kind)
    if str not in members and (len(members) != 2 or type(None) not in members):
        raise TypeError(f"field {name!r}: a flag has one type; use X | None or X | str, not {kind}")
    if type(None) not in members:
        return members[1] if members[0] is str else members[0]
    if bool in members:
        return kind  # bool | None stays itself (a boolean flag)
    return members[0] if members[1] is type(None) else members[1]


def _add_field_flags(parser, field: dataclasses.Field, kind: Any) -> list[argparse.Action]:
    """Add the flag(s) of one dataclass field, with HfArgumentParser's names, types, defaults and nargs."""
    options = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
    kwargs = {k: v for k, v in field.metadata.items() if k not in _OWN_METADATA}
    aliases = field.metadata.get("aliases", [])
    aliases = [aliases] if isinstance(aliases, str) else list(aliases)
    options += [a for a in aliases if a not in options]  # an alias equal to a generated flag is listed once
    if isinstance(kwargs.get("help"), str):
        kwargs["help"] = kwargs["help"].replace("%", "%%")  # argparse formats help with %-interpolation
    has_default = field.default is not dataclasses.MISSING
    has_factory = field.default_factory is not dataclasses.MISSING
    kind = _flag_type(kind, field.name)
    origin = typing.get_origin(kind) or kind
    is_bool = kind is bool or kind == (bool | None)
    no_flag_kwargs = dict(kwargs)
    if origin is typing.Literal or (inspect.isclass(kind) and issubclass(kind, enum.Enum)):
        kwargs["choices"] = list(typing.get_args(kind)) if origin is typing.Literal else [m.value for m in kind]
        kwargs["type"] = _choice_type(kwargs["choices"])
        if has_default:
            kwargs["default"] = field.default
        else:
            kwargs["required"] = True
    elif is_bool:
        kwargs["type"] = string_to_bool
        if kind is bool or (has_default and field.default is not None):
            kwargs.update(default=field.default if has_default else False, nargs="?", const=True)
    elif inspect.isclass(origin) and issubclass(origin, list):
        kwargs.update(type=typing.get_args(kind)[0], nargs="+")
        if has_factory:
            kwargs["default"] = field.default_factory()
        elif not has_default:
            kwargs["required"] = True
    else:
        kwargs["type"] = kind
        if has_default:
            kwargs["default"] = field.default
        elif has_factory:
            kwargs["default"] = field.default_factory()
        else:
            kwargs["required"] = True
    actions = [parser.add_argument(*options, **kwargs)]
    if is_bool and field.default is True:
        no_flag_kwargs.update(default=False, help=f"same as --{field.name} false")
        no_flags = (f"--no_{field.name}", f"--no-{field.name.replace('_', '-')}")
        actions.append(parser.add_argument(*no_flags, action="store_false", dest=field.name, **no_flag_kwargs))
    return actions


def add_dataclass_flags(parser, config_class: type) -> list[argparse.Action]:
    """Add one flag per init field of dataclass ``config_class`` to ``parser`` (or an argument group); returns the
    argparse actions added."""
    hints = typing.get_type_hints(config_class)
    actions = []
    for field in dataclasses.fields(config_class):
        if field.init:
            actions += _add_field_flags(parser, field, hints[field.name])
    return actions


# --- flag snapshots: a config class's flags without importing the class ------------------------------------------


def flag_snapshot(config_class: type) -> list[dict[str, Any]]:
    """The init fields of dataclass ``config_class`` as JSON data: what :func:`add_dataclass_flags` needs of each
    (name, flag type, default, metadata), to rebuild the same flags with :func:`class_from_snapshot` without
    importing the module that defines the class (e.g. transformers' ``TrainingArguments`` imports torch).

    Flag types are ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"bool | None"``, ``{"choices": [...]}`` (a
    ``Literal`` or an `~enum.Enum`: its values), ``{"list": type}``, or ``"module:QualName"`` (any other type,
    imported when a value is converted).
    """
    hints = typing.get_type_hints(config_class)
    fields = []
    for field in dataclasses.fields(config_class):
        if not field.init:
            continue
        entry = {"name": field.name, "type": _type_data(_flag_type(hints[field.name], field.name))}
        if field.default is not dataclasses.MISSING:
            entry["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            entry["default_factory"] = field.default_factory()
        entry["metadata"] = {k: list(v) if k == "choices" else v for k, v in field.metadata.items()}
        fields.append(entry)
    return fields


def _type_data(kind: Any, item: bool = False) -> Any:
    """JSON data for a flag type (``item``: of a list flag's items, which their type converts, choices or not)."""
    origin = typing.get_origin(kind)
    if kind in (str, int, float, bool) or kind == (bool | None):
        return "bool | None" if kind == (bool | None) else kind.__name__
    if origin is typing.Literal and not item:
        return {"choices": list(typing.get_args(kind))}
    if inspect.isclass(kind) and issubclass(kind, enum.Enum) and not item:
        return {"choices": [member.value for member in kind]}
    if inspect.isclass(origin) and issubclass(origin, list):
        return {"list": _type_data(typing.get_args(kind)[0], item=True)}
    kind = origin or kind  # dict[str, bool] converts a value as dict does
    return f"{kind.__module__}:{kind.__qualname__}"


class _ImportedType:
    """A flag's value type given as ``"module:QualName"``: imported when it converts a value. ``__name__`` is the
    type's own, so argparse's errors (``invalid DebugOption value``) read the same."""

    def __init__(self, path: str):
        self.path = path
        self.__name__ = path.rpartition(".")[2].rpartition(":")[2]

    def __call__(self, text: str) -> Any:
        module, _, name = self.path.partition(":")
        return functools.reduce(getattr, name.split("."), importlib.import_module(module))(text)


def _type_from_data(data: Any) -> Any:
    if isinstance(data, dict):
        return typing.Literal[tuple(data["choices"])] if "choices" in data else list[_type_from_data(data["list"])]
    simple = {"str": str, "int": int, "float": float, "bool": bool, "bool | None": bool | None}
    return simple[data] if data in simple else _ImportedType(data)


def class_from_snapshot(name: str, fields: list[dict[str, Any]], post_init: Callable | None = None) -> type:
    """A dataclass with the flags of the class :func:`flag_snapshot` described (same names, types, defaults, help),
    for :func:`parse_config`; ``post_init`` becomes its ``__post_init__`` (checks to run before the real class
    loads). Build the real class from its fields once parsing succeeds."""
    specs = []
    for entry in fields:
        kwargs = {"metadata": entry["metadata"]}
        if "default" in entry:
            kwargs["default"] = entry["default"]
        elif "default_factory" in entry:
            kwargs["default_factory"] = functools.partial(copy.deepcopy, entry["default_factory"])
        specs.append((entry["name"], _type_from_data(entry["type"]), dataclasses.field(**kwargs)))
    namespace = {"__post_init__": post_init} if post_init is not None else {}
    return dataclasses.make_dataclass(name, specs, kw_only=True, namespace=namespace)


# --- the parser -----------------------------------------------------------------------------------------------------


class _Formatter(argparse.HelpFormatter):
    """Shows an option's default once (unless the help mentions one, or it is None/False/empty), and its value
    placeholder once after all its spellings (``--max_steps, --max-steps MAX_STEPS``)."""

    def _get_help_string(self, action):
        text, default = action.help or "", action.default
        unset = default is None or default is False or default is argparse.SUPPRESS or default in ([], ())
        if "default" in text or unset or not action.option_strings:  # 0 and 0.0 are shown: they are values
            return text
        if isinstance(default, enum.Enum):  # show the value, not the repr
            return f"{text} (default: {default.value})"
        return f"{text} (default: %(default)s)"

    def _format_action_invocation(self, action):
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {value}"


class ConfigArgumentParser(argparse.ArgumentParser):
    """The parser :func:`parse_config` builds: its usage errors are one line (exit code 2)."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _classes(config_class: type | Sequence[type]) -> list[type]:
    return list(config_class) if isinstance(config_class, (list, tuple)) else [config_class]


def build_config_parser(
    config_class: type | Sequence[type],
    prog: str | None = None,
    *,
    description: str | None = None,
    usage: str | None = None,
    visible: Iterable[str] | None = None,
    show_all: bool = False,
    switches: Sequence[Switch] = (),
    compat: CompatFlags | None = None,
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> ConfigArgumentParser:
    """The parser :func:`parse_config` uses: the fields' flags, ``--config``, ``--help-all`` and the hooks below.

    Args:
        config_class (`type` or a sequence of `type`): the dataclass(es).
        prog, description, usage (`str`, *optional*): as for `argparse.ArgumentParser`.
        visible (iterable of `str`, *optional*): field names listed by ``--help``; default: every field not marked
            ``metadata={"advanced": True}``. The others are listed by ``--help-all``; switches by both.
        show_all (`bool`, *optional*, defaults to `False`): list every option (``--help-all``).
        switches (sequence of [`Switch`], *optional*): value-less flags that set a field, e.g. [`STRICT_IMAGES`].
        compat ([`CompatFlags`], *optional*): another tool's flags, accepted and folded into the config.
        extra_arguments (`callable`, *optional*): adds non-config arguments (positionals, output options).
    """
    parser = ConfigArgumentParser(prog=prog, description=description, usage=usage, formatter_class=_Formatter)
    parser.add_argument(
        "--config",
        metavar="YAML",
        default=None,
        help="YAML file setting any option (keys are option names); flags given beside it win",
    )
    parser.add_argument("--help-all", action="help", help="show every option, including the rarely used ones")
    if extra_arguments is not None:
        extra_arguments(parser)
    fields, field_actions = {}, []
    for cls in _classes(config_class):
        field_actions += add_dataclass_flags(parser, cls)
        fields.update({f.name: f for f in dataclasses.fields(cls) if f.init})
    for switch in switches:  # the documented switches: always listed
        parser.add_argument(
            switch.flag,
            dest=switch.field,
            action="store_const",
            const=switch.value,
            default=argparse.SUPPRESS,
            help=switch.help,
        )
    compat_actions = []
    if compat is not None:
        group = parser.add_argument_group("flags accepted for compatibility")
        compat_actions = add_dataclass_flags(group, compat.flags_class)
    if not show_all:
        shown = visible if visible is not None else [n for n, f in fields.items() if not f.metadata.get("advanced")]
        for action in compat_actions + [a for a in field_actions if a.dest not in set(shown)]:
            action.help = argparse.SUPPRESS
    return parser


def parse_config(
    config_class: type[T] | Sequence[type],
    argv: list[str] | None = None,
    prog: str | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    **parser_kwargs: Any,
) -> Any:
    """Parse ``argv`` (flags and an optional ``--config YAML``) into an instance of ``config_class``.

    Precedence: flags, then the YAML file, then ``defaults``, then the dataclass defaults. A value the dataclass
    refuses (its ``__post_init__`` raising ``ValueError``) is raised as is, for the caller to report (the command line
    reports it in flag words, see :func:`in_flag_words`).

    Args:
        config_class (`type` or a sequence of `type`): the dataclass to build, or several (a tuple of instances is
            returned, in order; ``--config`` keys then belong to the first).
        argv (`list[str]`, *optional*): the arguments (default: ``sys.argv[1:]``).
        prog (`str`, *optional*): program name in usage and errors.
        defaults (`dict`, *optional*): a script's own defaults for fields of the (first) config class.
        parser_kwargs: see :func:`build_config_parser` (``description``, ``usage``, ``visible``, ``switches``,
            ``compat``, ``extra_arguments``). With ``extra_arguments`` the result is ``(config, namespace)``, the
            namespace holding the extra arguments.

    Returns:
        The config (or a tuple of configs), and the namespace of the extra arguments if any.

    Raises:
        `SystemExit`: ``--help`` / ``--help-all`` (code 0) or a usage error (code 2, one line on stderr).
        `ConfigError`: the YAML file cannot be used.
        `ValueError`: the config refuses a value.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    classes = _classes(config_class)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_config_parser(config_class, prog, show_all="--help-all" in argv, **parser_kwargs)
    parser.set_defaults(**(defaults or {}))
    if known.config:
        parser.set_defaults(**load_yaml_options(known.config, classes[0]))
    values = vars(parser.parse_args(argv))
    values.pop("config")
    configs = []
    compat = parser_kwargs.get("compat")
    for i, cls in enumerate(classes):
        kwargs = {f.name: values.pop(f.name) for f in dataclasses.fields(cls) if f.init}
        if i == 0 and compat is not None:
            names = [f.name for f in dataclasses.fields(compat.flags_class) if f.init]
            kwargs = compat.apply(compat.flags_class(**{n: values.pop(n) for n in names}), kwargs)
        configs.append(cls(**kwargs))
    result = configs[0] if len(configs) == 1 else tuple(configs)
    if parser_kwargs.get("extra_arguments") is not None:
        return result, argparse.Namespace(**values)
    return result


def in_flag_words(message: str, config_class: type | Sequence[type]) -> str:
    """A config's ``"max_steps=0 must be >= 1"`` as the command line says it: ``"--max-steps 0 must be >= 1"``."""
    name, sep, rest = message.partition("=")
    names = {f.name for cls in _classes(config_class) for f in dataclasses.fields(cls)}
    return f"--{name.replace('_', '-')} {rest}" if sep and name in names else message
