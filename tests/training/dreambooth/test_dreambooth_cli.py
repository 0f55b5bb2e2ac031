"""`hfvision train dreambooth|classifier`: the dataclass-generated flags, without importing torch for --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hfvision.cli.main import build_parser, main


def test_dreambooth_help_lists_the_generated_flags(capsys):
    """--help fits on two screens with the common options; --help-all lists every field and diffusers' flags."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "dreambooth", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hfvision train dreambooth") and len(out.splitlines()) <= 100
    for flag in (
        "--pretrained_model_name_or_path",
        "--with_prior_preservation",
        "--use_lora",
        "--config",
        "--help-all",
    ):
        assert flag in out
    assert "--text_encoder_steps" not in out and "--hub_session" not in out  # rarely used: --help-all
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "dreambooth", "--help-all"])
    assert exit_info.value.code == 0
    full = capsys.readouterr().out
    for flag in ("--text_encoder_steps", "--hub_session", "--weighting_scheme", "--use_aspect_ratio_buckets"):
        assert flag in full


def test_train_registers_both_kinds(capsys):
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    kinds = train._subparsers._group_actions[0].choices
    assert {"dreambooth", "classifier"} <= set(kinds)
    assert main(["train"]) == 2


def test_bad_flags_are_one_line_errors(capsys):
    assert (
        main(
            [
                "train",
                "dreambooth",
                "--pretrained_model_name_or_path",
                "x",
                "--instance_data_dir",
                "d",
                "--resolution",
                "500",
            ]
        )
        == 2  # a value the config refuses: a usage error, in flag words
    )
    assert "--resolution 500 must be a positive multiple of 8; try 504 or 496" in capsys.readouterr().err


def test_hfvision_help_does_not_import_torch():
    code = "import sys; from hfvision.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
