"""`hfvision generate` / `hfvision models list`, run in-process through the CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from hfvision.cli.main import main


def test_generate_matches_diffusers_with_controlnet(tiny_model_dir, tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from hfvision.pipelines.controlnet_utils import canny_image
    from hfvision.testing import sample_image

    sample_image("chelsea").resize((64, 64)).save(tmp_path / "cat.png")
    out = tmp_path / "out.png"
    argv = [
        "generate",
        "--model",
        str(tiny_model_dir("sd1")),
        "--prompt",
        "a photo of {token} cat",
        "--token",
        "sks",
        "--steps",
        "2",
        "--seed",
        "7",
        "--out",
        str(out),
        "--controlnet",
        str(tiny_model_dir("controlnet-sd1")),
        "--control-image",
        str(tmp_path / "cat.png"),
        "--save-control",
        str(tmp_path / "edges.png"),
    ]
    assert main(argv) == 0
    reference = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_model_dir("sd1"),
        controlnet=ControlNetModel.from_pretrained(tiny_model_dir("controlnet-sd1")),
        safety_checker=None,
        requires_safety_checker=False,
    )
    edges = canny_image(Image.open(tmp_path / "cat.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "edges.png")), np.asarray(edges))
    expected = reference(
        "a photo of sks cat", image=edges, num_inference_steps=2, generator=torch.Generator().manual_seed(7)
    ).images[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(expected))


def test_models_list_and_errors(capsys, tmp_path):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["key"] for r in rows} >= {"sd15", "sd21", "sd21-base", "sdxl", "flux-dev", "flux-schnell"}
    assert main(["models", "list", "--controlnets", "sdxl"]) == 0
    assert "diffusers/controlnet-canny-sdxl-1.0" in capsys.readouterr().out
    assert main(["generate", "--model", "sd1.5", "--prompt", "x", "--out", str(tmp_path / "x.png")]) == 1
    assert "did you mean 'sd15'" in capsys.readouterr().err
    assert main(["generate", "--model", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.gif")]) == 2
    assert "must end in .png" in capsys.readouterr().err
