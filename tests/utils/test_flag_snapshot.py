"""``flags.json``, the snapshot of ``ImageClassificationConfig``'s fields that ``hfvision train classifier`` parses
with (so usage errors need not import ``TrainingArguments`` and torch), is the live class's, and builds its flags."""

from __future__ import annotations

import argparse
import json

import pytest

from hfvision.training.classification import flags
from hfvision.utils.config_parser import STRICT_IMAGES, build_config_parser, parse_config


def _describe(action: argparse.Action) -> dict:
    kind = action.type
    return {
        "options": action.option_strings,
        "dest": action.dest,
        "kind": type(action).__name__,
        "type": getattr(kind, "__name__", kind),  # a lazily imported type is named as the type itself
        "default": action.default,
        "nargs": action.nargs,
        "const": action.const,
        "choices": list(action.choices) if action.choices is not None else None,
        "required": action.required,
        "help": action.help,
    }


@pytest.fixture(scope="module")
def live():
    from hfvision.training.classification import ImageClassificationConfig

    return ImageClassificationConfig


def test_shipped_snapshot_is_the_live_class_snapshot(live):
    """Fails when a field of the config (or of TrainingArguments at the pinned version) changes without
    ``python -m hfvision.training.classification.flags`` regenerating the snapshot."""
    shipped = json.loads(flags.SNAPSHOT.read_text(encoding="utf-8"))
    assert shipped == flags.snapshot_data()
    assert flags.flags_class() is not live  # the installed transformers is the snapshot's: the fast path is used


def test_snapshot_builds_the_live_class_flags_and_help(live):
    snapshot = flags.flags_class()
    built = [build_config_parser(cls, "prog", show_all=True) for cls in (snapshot, live)]
    ours, theirs = ([_describe(a) for a in parser._actions] for parser in built)
    assert len(ours) == len(theirs) > 130
    for mine, peer in zip(ours, theirs):
        assert mine == peer, peer["dest"]
    assert built[0].format_help() == built[1].format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "m", "--data", "d"],
        [
            *("--model", "m", "--data", "d", "--epochs", "2", "--no_augment", "--eval_strategy", "steps", "--lora"),
            *("--lora_target_modules", "query", "value", "--strict", "--output-dir", "o", "--push-to-hub", "me/x"),
            *("--learning_rate", "1e-4", "--optim", "adamw_torch", "--report_to", "none", "--max_steps", "5"),
        ],
    ],
)
def test_command_line_builds_the_config_the_live_class_parses(live, argv, tmp_path):
    from hfvision.training.classification import cli

    yaml = tmp_path / "run.yaml"
    yaml.write_text("seed: 7\nlabel_column: y\nlora_r: 4\n", encoding="utf-8")
    for args in (argv, [*argv, "--config", str(yaml)]):
        config = cli.parse_args(args)
        assert type(config) is live
        kwargs = {"description": cli.DESCRIPTION, "usage": cli.USAGE, "visible": cli.VISIBLE}
        expected = parse_config(live, cli._push_to_hub_value(args), cli.PROG, **kwargs, switches=(STRICT_IMAGES,))
        assert config == expected


def test_types_imported_on_use_convert_and_refuse_values_as_the_live_class(live, capsys):
    """``--debug`` items are transformers' ``DebugOption``, which the snapshot names and imports only when converting."""
    parsers = [build_config_parser(cls, "prog") for cls in (flags.flags_class(), live)]
    values = [p.parse_args(["--debug", "underflow_overflow", "--liger_kernel_config", ""]) for p in parsers]
    assert [v.debug for v in values] == [values[1].debug] * 2 and values[1].debug[0].value == "underflow_overflow"
    assert [v.liger_kernel_config for v in values] == [{}, {}]
    errors = []
    for parser in parsers:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--debug", "nope"])
        errors.append((exit_info.value.code, capsys.readouterr().err))
    assert errors[0] == errors[1] and errors[0][0] == 2 and "invalid DebugOption value: 'nope'" in errors[0][1]


def test_another_transformers_version_parses_with_the_live_class(live, monkeypatch):
    from hfvision.training.classification import cli

    monkeypatch.setattr(flags, "version", lambda name: "0.0.1")
    flags.flags_class.cache_clear()
    try:
        assert flags.flags_class() is live
        assert cli.parse_args(["--model", "m", "--data", "d", "--epochs", "2"]) == live(
            model_name_or_path="m", data="d", num_train_epochs=2
        )
    finally:
        flags.flags_class.cache_clear()
