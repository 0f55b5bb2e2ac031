"""Bitwise-identical output: DreamBoothPipeline / DreamBoothXLPipeline against diffusers' StableDiffusionPipeline /
StableDiffusionXLPipeline on the same tiny components, for every scheduler diffusers ships for SD (including old
configs the parent's constructor normalises: DDIM with steps_offset=0, clip_sample=True), with and without guidance,
negative prompts, several images per prompt from a generator list, latent output, guidance rescale and bf16."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from dreambooth_testing import gen

from hfvision.pipelines.dreambooth import DreamBoothPipeline
from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
from hfvision.testing import tiny_sd_components

BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SCHEDULERS = {
    "ddim-offset0": (DDIMScheduler, dict(steps_offset=0, clip_sample=False, set_alpha_to_one=False)),
    "ddim-offset1": (DDIMScheduler, dict(steps_offset=1, clip_sample=False, set_alpha_to_one=False)),
    "ddim-clip-sample": (DDIMScheduler, dict(steps_offset=1, clip_sample=True, set_alpha_to_one=False)),
    "pndm": (PNDMScheduler, dict(skip_prk_steps=True, steps_offset=1)),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)),
    "lms": (LMSDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}
# (name, prompt, call arguments): guidance with negatives and a generator list; no guidance, latent output;
# guidance rescale
CALLS = [
    (
        "cfg-negative-list",
        ["{token} {class}", "a {token} on a beach"],
        dict(negative_prompt=["blurry", "dark"], num_images_per_prompt=2, guidance_scale=6.0),
    ),
    ("no-cfg-latent", "a photo of {token} {class}", dict(guidance_scale=1.0, output_type="latent")),
    ("rescale", "{token} {class}", dict(guidance_scale=5.0, guidance_rescale=0.7)),
]


def expand(prompt):
    return [expand(p) for p in prompt] if isinstance(prompt, list) else prompt.format(token="sks", **{"class": "dog"})


def scheduler(name):
    cls, overrides = SCHEDULERS[name]
    return cls(**BETAS, **overrides)


@functools.cache
def components_for(family, dtype):
    """Tiny components, built once per (family, dtype): pipelines do not modify their modules."""
    components = tiny_sd_components(family)
    for key in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if key in components:
            components[key].to(dtype)
    return components


def pair(family, scheduler_name, dtype=torch.float32):
    """(diffusers pipeline, hfvision pipeline) sharing every module except the scheduler (one each, same config)."""
    components = components_for(family, dtype)
    if family == "sdxl":
        ref = StableDiffusionXLPipeline(**{**components, "scheduler": scheduler(scheduler_name)})
        ours = DreamBoothXLPipeline(
            **{**components, "scheduler": scheduler(scheduler_name)}, instance_token="sks", class_noun="dog"
        )
    else:
        ref = StableDiffusionPipeline(
            **{**components, "scheduler": scheduler(scheduler_name)}, requires_safety_checker=False
        )
        ours = DreamBoothPipeline(
            **{**components, "scheduler": scheduler(scheduler_name)},
            requires_safety_checker=False,
            instance_token="sks",
            class_noun="dog",
        )
    for pipe in (ref, ours):
        pipe.set_progress_bar_config(disable=True)
    return ref, ours


def run_both(ref, ours, prompt, kwargs, size=32):
    """Both pipelines' images for ``prompt`` (placeholders written out for diffusers), one generator per image."""
    batch = (len(prompt) if isinstance(prompt, list) else 1) * kwargs.get("num_images_per_prompt", 1)
    common = {"num_inference_steps": 2, "height": size, "width": size, "output_type": "pt", **kwargs}
    expected = ref(expand(prompt), generator=[gen(i) for i in range(batch)], **common).images
    actual = ours(prompt, generator=[gen(i) for i in range(batch)], **common).images
    return expected, actual


@pytest.mark.parametrize("scheduler_name", list(SCHEDULERS))
def test_sd_bitwise_equal_for_every_scheduler(scheduler_name):
    ref, ours = pair("sd1", scheduler_name)
    # the parent's constructor normalised the old configs, exactly as diffusers' own pipeline did
    assert ours.scheduler.config.steps_offset == ref.scheduler.config.steps_offset == 1
    assert not ours.scheduler.config.get("clip_sample") and not ref.scheduler.config.get("clip_sample")
    for name, prompt, kwargs in CALLS:
        expected, actual = run_both(ref, ours, prompt, kwargs)
        assert expected.shape == actual.shape, name
        assert torch.equal(expected, actual), f"{scheduler_name}/{name}: max diff {(expected - actual).abs().max()}"
    ref.scheduler.set_timesteps(2)
    ours.scheduler.set_timesteps(2)
    assert torch.equal(ref.scheduler.timesteps, ours.scheduler.timesteps)


@pytest.mark.parametrize("scheduler_name", ["ddim-offset0", "euler-a", "dpm++2m"])
def test_sdxl_bitwise_equal(scheduler_name):
    ref, ours = pair("sdxl", scheduler_name)
    for name, prompt, kwargs in CALLS:
        expected, actual = run_both(ref, ours, prompt, kwargs)
        assert torch.equal(expected, actual), f"{scheduler_name}/{name}: max diff {(expected - actual).abs().max()}"


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_bf16_bitwise_equal(family):
    ref, ours = pair(family, "euler", dtype=torch.bfloat16)
    expected, actual = run_both(ref, ours, "a photo of {token} {class}", dict(guidance_scale=5.0))
    assert actual.dtype == torch.bfloat16 and ours.unet.dtype == torch.bfloat16
    assert torch.equal(expected, actual)
