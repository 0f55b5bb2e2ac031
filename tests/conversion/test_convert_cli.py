"""``hfvision convert to-single-file / from-single-file``."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hfvision.cli.main import main


def test_cli_half_precision_round_trip_with_verification(tiny_model_dir, tmp_path, capsys):
    """--half stores float16; --verify proves the only change is fp16 rounding; loading gives float32 back."""
    out = tmp_path / "model.safetensors"
    argv = [
        "convert",
        "to-single-file",
        str(tiny_model_dir("sd2")),
        str(out),
        "--half",
        "--verify",
        "--trigger-word",
        "sks",
        "--metadata",
        "author=me",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "verification passed" in printed and "max |diff| 0" in printed
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["hfvision.trigger_word"] == "sks" and meta["modelspec.author"] == "me"
    assert meta["hfvision.dtype"] == "float16"
    assert {t.dtype for t in load_file(out).values()} == {torch.float16}

    assert main(["convert", "from-single-file", str(out), str(tmp_path / "back")]) == 0
    assert "family sd2, prediction type v_prediction" in capsys.readouterr().out
    scheduler = json.loads((tmp_path / "back" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    written = load_file(tmp_path / "back" / "unet" / "diffusion_pytorch_model.safetensors")
    original = load_file(tiny_model_dir("sd2") / "unet" / "diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(written[k], v) for k, v in original.items())  # fp16 did round something ...
    assert all(torch.equal(written[k], v.half().float()) for k, v in original.items())  # ... and nothing else


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    assert main(["convert", "from-single-file", str(bad), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hfvision convert: error:") and "truncated or corrupt" in err and "\n" not in err
    assert main(["convert", "to-single-file", str(tmp_path), str(tmp_path / "x.safetensors"), "--metadata", "k"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
