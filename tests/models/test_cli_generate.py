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


def _argv(model, out, *extra):
    return ["generate", "--model", str(model), "--out", str(out), "--height", "32", "--width", "32", *extra]


def _same_image(path, expected) -> None:
    np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(expected))


def _stock_image(pipe, prompt: str, steps: int, seed: int = 0, **kwargs):
    """The image a stock diffusers pipeline makes at `_argv`'s 32x32 size from the CLI's seeded CPU generator."""
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=steps, height=32, width=32, generator=generator, **kwargs).images[0]


def test_generate_flux_matches_stock_pipeline(tmp_path):
    """Flux-dev folder: {token} from --token, guidance 3.5 and 512 T5 tokens by default, true CFG with a negative
    prompt; a saved DreamBooth schnell folder: its stored token, 4 steps without guidance, 256 tokens; both equal
    to stock FluxPipeline."""
    from diffusers import FluxPipeline

    from hfvision.pipelines import DreamBoothFluxPipeline
    from hfvision.testing import save_tiny_flux, tiny_flux_pipeline

    dev = save_tiny_flux(tmp_path / "dev", "dev")
    argv = _argv(dev, tmp_path / "dev.png", "--prompt", "a photo of {token} dog", "--token", "sks", "--steps", "2")
    assert main([*argv, "--seed", "3", "--negative-prompt", "{token} cat", "--true-cfg-scale", "2"]) == 0
    dev_pipe = FluxPipeline.from_pretrained(dev)
    expected = _stock_image(
        dev_pipe,
        "a photo of sks dog",
        steps=2,
        seed=3,
        negative_prompt="sks cat",
        true_cfg_scale=2.0,
        guidance_scale=3.5,
        max_sequence_length=512,
    )
    _same_image(tmp_path / "dev.png", expected)

    stock = tiny_flux_pipeline("schnell")
    DreamBoothFluxPipeline.from_components(stock, instance_token="zwx").save_pretrained(tmp_path / "schnell")
    assert main(_argv(tmp_path / "schnell", tmp_path / "s.png", "--prompt", "{token} on a beach")) == 0
    expected = _stock_image(stock, "zwx on a beach", 4, guidance_scale=0.0, max_sequence_length=256)
    _same_image(tmp_path / "s.png", expected)


def test_generate_sd3_matches_stock_pipeline(tmp_path):
    from diffusers import StableDiffusion3Pipeline

    from hfvision.testing import save_tiny_sd3

    model = save_tiny_sd3(tmp_path / "sd3")
    argv = _argv(model, tmp_path / "o.png", "--prompt", "a cat", "--negative-prompt", "blurry", "--steps", "2")
    assert main(argv) == 0
    reference = StableDiffusion3Pipeline.from_pretrained(model)
    expected = _stock_image(
        reference, "a cat", 2, negative_prompt="blurry", guidance_scale=7.0, max_sequence_length=256
    )
    _same_image(tmp_path / "o.png", expected)


def test_generate_flow_flag_errors_before_loading(tmp_path, capsys, monkeypatch):
    import hfvision.models
    from hfvision.testing import save_tiny_flux

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(hfvision.models, "load_pipeline", refuse)
    schnell = save_tiny_flux(tmp_path / "schnell", "schnell")
    out = tmp_path / "x.png"
    cases = [
        (_argv("flux-dev", out, "--prompt", "x", "--height", "40"), "--height 40 must be a multiple of 16"),
        (_argv("flux-dev", out, "--prompt", "x", "--negative-prompt", "blur"), "--true-cfg-scale"),
        (_argv("sd35-medium", out, "--prompt", "x", "--controlnet", "canny"), "no ControlNet"),
        (_argv(schnell, out, "--prompt", "x", "--guidance-scale", "2"), "FLUX.1-schnell has no guidance"),
        (_argv(schnell, out, "--prompt", "x", "--max-sequence-length", "300"), "over flux-schnell's 256"),
        (_argv(schnell, out, "--prompt", "{token} x"), "stores no instance_token; pass --token"),
        (_argv("sd15", out, "--prompt", "x", "--true-cfg-scale", "2"), "for Flux.1/SD3 models"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_generate_flux_controlnet_matches_stock_pipeline(tiny_model_dir, tmp_path, capsys):
    """A Flux ControlNet folder runs through diffusers' FluxControlNetPipeline: same image as the stock one."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline

    from hfvision.pipelines.controlnet_utils import canny_image
    from hfvision.testing import sample_image, save_tiny_flux, tiny_flux_transformer

    model = save_tiny_flux(tmp_path / "dev", "dev")
    torch.manual_seed(5)
    controlnet = FluxControlNetModel.from_transformer(
        tiny_flux_transformer("dev"), num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2
    )
    with torch.no_grad():  # its output projections start at zero (no effect): give them weights
        for param in controlnet.parameters():
            if not param.any():
                param.normal_(0.0, 0.5)
    controlnet.save_pretrained(tmp_path / "cn")
    sample_image("chelsea").resize((32, 32)).save(tmp_path / "cat.png")
    argv = _argv(model, tmp_path / "o.png", "--prompt", "{token} cat", "--token", "sks", "--steps", "2")
    assert main([*argv, "--controlnet", str(tmp_path / "cn"), "--control-image", str(tmp_path / "cat.png")]) == 0
    reference = FluxControlNetPipeline.from_pretrained(
        model, controlnet=FluxControlNetModel.from_pretrained(tmp_path / "cn")
    )

    edges = canny_image(Image.open(tmp_path / "cat.png"))

    def run(scale):
        return _stock_image(
            reference,
            "sks cat",
            2,
            control_image=edges,
            controlnet_conditioning_scale=scale,
            guidance_scale=3.5,
            max_sequence_length=512,
        )

    _same_image(tmp_path / "o.png", run(1.0))
    assert not np.array_equal(np.asarray(run(0.0)), np.asarray(Image.open(tmp_path / "o.png")))  # control acts
    # a Flux ControlNet with an SD model: refused from the configs
    argv = _argv(tiny_model_dir("sd1"), tmp_path / "x.png", "--prompt", "x", "--controlnet", str(tmp_path / "cn"))
    assert main([*argv, "--control-image", str(tmp_path / "cat.png")]) == 2
    assert "is a FluxControlNetModel, which does not fit an SD1 model" in capsys.readouterr().err
