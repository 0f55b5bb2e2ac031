"""DreamBoothXLPipeline: diffusers' SDXL pipelines (with and without ControlNet) plus the DreamBooth conveniences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dreambooth_testing import active_controlnet, control_photo, gen  # noqa: F401

from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
from hfvision.testing import tiny_controlnet, tiny_sd_pipeline

KWARGS = dict(num_inference_steps=2, guidance_scale=5.0, output_type="np")


@pytest.fixture(scope="module")
def ref():
    pipe = tiny_sd_pipeline("sdxl")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_images_equal_sdxl_pipeline(ref):
    pipe = DreamBoothXLPipeline.from_components(ref, instance_token="sks", class_noun="cat")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.family == "sdxl" and pipe.instance_token == "sks"
    expected = ref(
        "sks cat", prompt_2="sks cat, photo", negative_prompt="blurry", height=64, width=64, generator=gen(0), **KWARGS
    ).images
    actual = pipe(
        "{token} {class}",
        prompt_2="{token} {class}, photo",
        negative_prompt="blurry",
        height=64,
        width=64,
        generator=gen(0),
        **KWARGS,
    ).images
    assert expected.shape == (1, 64, 64, 3)
    assert np.abs(expected - actual).max() <= 1e-5


def test_controlnet_images_equal_sdxl_controlnet_pipeline(ref):
    from diffusers import StableDiffusionXLControlNetPipeline

    controlnet = active_controlnet("sdxl")
    expected_pipe = StableDiffusionXLControlNetPipeline(**ref.components, controlnet=controlnet)
    expected_pipe.set_progress_bar_config(disable=True)
    pipe = DreamBoothXLPipeline.from_components(ref, controlnet=controlnet, instance_token="sks")
    image = control_photo()
    expected = expected_pipe("sks", image=image, controlnet_conditioning_scale=0.6, generator=gen(1), **KWARGS).images
    actual = pipe("{token}", control_image=image, controlnet_conditioning_scale=0.6, generator=gen(1), **KWARGS).images
    assert np.abs(expected - actual).max() <= 1e-5


def test_wrong_controlnet_and_missing_image_refused(ref):
    with pytest.raises(ValueError, match="cross_attention_dim is 32 but the UNet's is 64"):
        DreamBoothXLPipeline.from_components(ref, controlnet=tiny_controlnet("sd1"))
    pipe = DreamBoothXLPipeline.from_components(ref, controlnet=tiny_controlnet("sdxl"))
    with pytest.raises(ValueError, match="pass `control_image`"):
        pipe("x", num_inference_steps=1)
    with pytest.raises(ValueError, match="has no ControlNet"):
        DreamBoothXLPipeline.from_components(ref)("x", control_image=control_photo(), num_inference_steps=1)
    assert torch.equal(pipe.unet.conv_in.weight, ref.unet.conv_in.weight)  # modules are shared, not copied
