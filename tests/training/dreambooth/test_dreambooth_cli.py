"""`hfvision train dreambooth|classifier`: the dataclass-generated flags, without importing torch for --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hfvision.cli.main import build_parser, main


def test_dreambooth_help_lists_the_generated_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "dreambooth", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hfvision train dreambooth")
    for flag in (
        "--pretrained_model_name_or_path",
        "--with_prior_preservation",
        "--text_encoder_steps",
        "--use_lora",
        "--hub_session",
        "--config",
    ):
        assert flag in out


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
        == 1
    )
    assert "resolution=500 must be a positive multiple of 8; try 504 or 496" in capsys.readouterr().err


def test_hfvision_help_does_not_import_torch():
    code = "import sys; from hfvision.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
