"""The help contract of every subcommand: two screens at most, every option with help text and its default shown
once (including the flags ``parse_config`` generates when a command runs), and usage errors of generated flags that
come back before any heavy library loads."""

from __future__ import annotations

import json

import pytest

from hfvision.cli.main import main


def test_help_of_every_subcommand_fits_two_screens_and_shows_defaults_once(capsys):
    commands = [
        ["classify"],
        ["generate"],
        ["convert", "to-single-file"],
        ["convert", "from-single-file"],
        ["export", "onnx"],
        ["serve"],
        ["ui"],
        ["data", "prepare"],
        ["session", "create"],
        ["session", "status"],
        ["train", "classifier"],
        ["models", "list"],
        ["convert", "lora"],
        ["eval", "dreambooth"],
        ["eval", "report"],
        ["env"],
    ]
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert len(text.splitlines()) <= 100, (command, len(text.splitlines()))
        for line in text.splitlines():
            assert line.count("(default") <= 1, (command, line)
        options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
        assert len(options) == len(set(options)), command
        for flag in ("--data DATA, --data DATA",):
            assert flag not in text


def _parsers(parser, path=("hfvision",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_has_help(monkeypatch, capsys):
    """Every option of every subcommand, including those whose flags parse_config generates when the command runs
    (their parsers are caught as ``--help-all`` builds them), has help text and shows its default at most once."""
    from hfvision.cli.main import build_parser
    from hfvision.utils import config_parser

    parsers = list(_parsers(build_parser()))
    built = []

    def build(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    original = config_parser.build_config_parser
    monkeypatch.setattr(config_parser, "build_config_parser", build)
    passthrough = [path for path, parser in parsers if parser.get_default("passthrough")]
    assert {"serve", "ui", "prepare", "classifier", "dreambooth"} <= {path[-1] for path in passthrough}
    for path in passthrough:
        with pytest.raises(SystemExit) as exit_info:
            main([*path[1:], "--help-all"])
        assert exit_info.value.code == 0
        assert all(line.count("(default") <= 1 for line in capsys.readouterr().out.splitlines()), path
        parsers.append((path, built[-1]))
    missing = [
        (" ".join(path), action.option_strings[0])
        for path, parser in parsers
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert missing == []


def test_usage_errors_of_generated_flags_load_no_heavy_library(run_python):
    """A bad value for serve, ui, train dreambooth or data prepare is refused before torch, transformers, diffusers
    or a web framework is imported: that keeps a usage error within about a second (the contract says 2 s)."""
    code = """
        import json, sys
        from hfvision.cli.main import main
        dreambooth = ["--pretrained_model_name_or_path", "m", "--instance_data_dir", "d", "--resolution", "500"]
        codes = [
            main(["serve", "--port", "-1"]),
            main(["ui", "--steps", "0"]),
            main(["data", "prepare", "a", "b", "--size", "500"]),
            main(["train", "dreambooth", *dreambooth]),
        ]
        heavy = [m for m in ("torch", "transformers", "diffusers", "fastapi", "gradio", "ray") if m in sys.modules]
        print(json.dumps({"codes": codes, "heavy": heavy}))
    """
    result = json.loads(run_python(code).strip().splitlines()[-1])
    assert result == {"codes": [2, 2, 2, 2], "heavy": []}


def test_classifier_usage_errors_and_help_load_neither_torch_nor_training_args(run_python):
    """``train classifier`` parses with the snapshot of its config's fields (flags.json): an unknown flag, a bad type,
    a bad choice, a missing --model and --help answer with one line (or the help), before transformers loads."""
    code = """
        import contextlib, io, json, sys, time
        from hfvision.cli.main import main
        start = time.perf_counter()
        results = []
        for argv in (["--bogus", "1"], ["--num_train_epochs", "abc"], ["--model", "m", "--data", "d", "--lora_save", "x"],
                     ["--data", "d"], ["--help"]):
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = main(["train", "classifier", *argv])
                except SystemExit as exit_:
                    code = exit_.code
            results.append([code, err.getvalue().splitlines(), len(out.getvalue().splitlines())])
        heavy = [m for m in ("torch", "transformers", "transformers.training_args", "peft") if m in sys.modules]
        print(json.dumps({"results": results, "heavy": heavy, "seconds": time.perf_counter() - start}))
    """
    result = json.loads(run_python(code).strip().splitlines()[-1])
    assert result["heavy"] == []
    *errors, help_ = result["results"]
    assert [code for code, _, _ in errors] == [2, 2, 2, 2]
    assert [len(lines) for _, lines, _ in errors] == [1, 1, 1, 1]
    assert "--bogus" in errors[0][1][0] and "'abc'" in errors[1][1][0] and "'x'" in errors[2][1][0]
    assert "--model" in errors[3][1][0]
    assert help_[0] == 0 and help_[1] == [] and help_[2] > 10
    assert result["seconds"] < 2
