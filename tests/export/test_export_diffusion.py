"""Stable Diffusion / DreamBooth pipelines: Optimum's ONNX layout, validated components, same-seed images on ORT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hfvision.export import export_onnx, load_ort_pipeline


@pytest.fixture(scope="module")
def sd1_export(tiny_model_dir, tmp_path_factory):
    return export_onnx(tiny_model_dir("sd1"), tmp_path_factory.mktemp("sd1-onnx") / "export")


def test_sd_export_layout_and_component_validation(sd1_export):
    out = sd1_export.output_dir
    for part in ("text_encoder", "unet", "vae_encoder", "vae_decoder"):
        assert (out / part / "model.onnx").is_file() and (out / part / "config.json").is_file()
    assert (out / "tokenizer" / "tokenizer_config.json").is_file()
    assert (out / "scheduler" / "scheduler_config.json").is_file()
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    validation = json.loads((out / "export_report.json").read_text())["validation"]
    assert validation["passed"]
    for part, comp in validation["components"].items():
        assert comp["passed"] and comp["max_abs_diff"] <= comp["atol"], part
        kinds = {c["inputs"] for c in comp["cases"]}
        assert kinds == ({"dummy", "prompts"} if part == "text_encoder" else {"dummy", "photos"})
        assert len({tuple(c["size"]) for c in comp["cases"]}) == 2 and {c["batch_size"] for c in comp["cases"]} == {
            1,
            3,
        }
    assert validation["pipeline"]["max_abs_diff"] <= 1e-3


def test_ort_pipeline_generates_the_torch_image_from_the_same_seed(sd1_export, tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    torch_pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir("sd1"))
    ort_pipe = load_ort_pipeline("text-to-image", sd1_export.output_dir)
    assert isinstance(ort_pipe, StableDiffusionPipeline)  # diffusers' own __call__ on ORT components
    kwargs = dict(
        prompt="a photo of sks dog on the beach",
        negative_prompt="blurry",
        num_inference_steps=3,
        num_images_per_prompt=2,
        height=48,
        width=64,
        output_type="np",
    )
    for pipe in (torch_pipe, ort_pipe):
        pipe.set_progress_bar_config(disable=True)
    expected = torch_pipe(**kwargs, generator=torch.Generator().manual_seed(42)).images
    actual = ort_pipe(**kwargs, generator=torch.Generator().manual_seed(42)).images
    assert actual.shape == expected.shape == (2, 48, 64, 3)
    assert np.abs(actual - expected).max() <= 1e-3
    different = ort_pipe(**kwargs, generator=torch.Generator().manual_seed(43)).images
    assert np.abs(different - expected).max() > 1e-2  # the seed matters: the check is not vacuous


def test_ort_vae_encoder_matches_torch(sd1_export, tiny_model_dir):
    from diffusers import AutoencoderKL

    from hfvision.export.diffusion import load_ort_components

    vae = AutoencoderKL.from_pretrained(tiny_model_dir("sd1"), subfolder="vae").eval()
    ort_vae = load_ort_components(sd1_export.output_dir)["vae"]
    x = torch.rand(2, 3, 40, 56) * 2 - 1
    with torch.no_grad():
        expected = vae.encode(x).latent_dist
    actual = ort_vae.encode(x).latent_dist
    torch.testing.assert_close(actual.mean, expected.mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(actual.std, expected.std, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_sd2_v_prediction_and_sdxl_export_and_generate(family, tiny_model_dir, tmp_path):
    from diffusers import DiffusionPipeline

    result = export_onnx(tiny_model_dir(family), tmp_path / "out")
    assert result.validation["passed"] and result.validation["pipeline"]["max_abs_diff"] <= 1e-3
    if family == "sdxl":
        assert (tmp_path / "out" / "text_encoder_2" / "model.onnx").is_file()
    torch_pipe = DiffusionPipeline.from_pretrained(tiny_model_dir(family))
    ort_pipe = load_ort_pipeline("text-to-image", tmp_path / "out")
    assert type(ort_pipe).__mro__[1] is type(torch_pipe)
    kwargs = dict(prompt="a photo of sks dog", num_inference_steps=2, height=64, width=64, output_type="np")
    expected = torch_pipe(**kwargs, generator=torch.Generator().manual_seed(1)).images
    actual = ort_pipe(**kwargs, generator=torch.Generator().manual_seed(1)).images
    assert np.abs(actual - expected).max() <= 1e-3
