"""DreamBoothPipeline equals diffusers' SD / ControlNet pipelines on the same components, and its conveniences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dreambooth_testing import active_controlnet, control_photo, diffusers_warnings, gen

from hfvision.pipelines.dreambooth import DreamBoothPipeline, expand_prompt
from hfvision.testing import tiny_controlnet, tiny_sd_pipeline

STEPS = 2


@pytest.fixture(scope="module")
def reference():
    """family -> diffusers StableDiffusionPipeline on tiny components (shared: pipelines do not mutate modules)."""
    cache = {}

    def get(family):
        if family not in cache:
            pipe = tiny_sd_pipeline(family)
            pipe.set_progress_bar_config(disable=True)
            cache[family] = pipe
        return cache[family]

    return get


def dreambooth(ref, **kwargs):
    pipe = DreamBoothPipeline.from_components(ref, instance_token="sks", class_noun="dog", **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_images_equal_stable_diffusion_pipeline(reference, family):
    ref = reference(family)
    pipe = dreambooth(ref)
    assert pipe.config.family == family and pipe.config.instance_token == "sks"
    common = dict(num_inference_steps=STEPS, output_type="np", height=64, width=64)
    # single prompt with guidance; then a batch with negatives, 2 images per prompt and guidance rescale
    expected = ref("a photo of sks dog", guidance_scale=6.0, generator=gen(0), **common).images
    actual = pipe("a photo of {token} {class}", guidance_scale=6.0, generator=gen(0), **common).images
    assert expected.shape == (1, 64, 64, 3)
    assert np.abs(expected - actual).max() <= 1e-5
    batch = dict(guidance_scale=5.0, guidance_rescale=0.5, num_images_per_prompt=2, **common)
    expected = ref(["sks dog", "a sks dog on a beach"], negative_prompt=["blurry", "dark"], generator=gen(1), **batch)
    actual = pipe(
        ["{token} {class}", "a {token} dog on a beach"], negative_prompt=["blurry", "dark"], generator=gen(1), **batch
    )
    assert expected.images.shape == (4, 64, 64, 3)
    assert np.abs(expected.images - actual.images).max() <= 1e-5
    assert actual.nsfw_content_detected is None


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_controlnet_images_equal_diffusers_controlnet_pipeline(reference, family):
    from diffusers import StableDiffusionControlNetPipeline

    ref, controlnet = reference(family), active_controlnet(family)
    expected_pipe = StableDiffusionControlNetPipeline(
        **ref.components, controlnet=controlnet, requires_safety_checker=False
    )
    expected_pipe.set_progress_bar_config(disable=True)
    pipe = dreambooth(ref, controlnet=controlnet)
    image = control_photo()
    kwargs = dict(
        num_inference_steps=STEPS,
        output_type="np",
        guidance_scale=5.0,
        controlnet_conditioning_scale=0.7,
        control_guidance_end=0.7,
    )
    expected = expected_pipe("sks dog", image=image, generator=gen(2), **kwargs).images
    actual = pipe("{token} {class}", control_image=image, generator=gen(2), **kwargs).images
    assert np.abs(expected - actual).max() <= 1e-5
    without = dreambooth(ref)(
        "{token} {class}",
        generator=gen(2),
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        output_type="np",
        height=64,
        width=64,
    ).images
    assert np.abs(without - actual).max() > 1e-3  # the ControlNet did change the result


def test_guidance_batches_cond_and_uncond_in_one_unet_call(reference):
    pipe = dreambooth(reference("sd1"))
    batch_sizes = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    try:
        pipe(["{token}", "{class}"], num_inference_steps=STEPS, num_images_per_prompt=2, output_type="latent")
        pipe("{token}", num_inference_steps=STEPS, guidance_scale=1.0, output_type="latent")
    finally:
        handle.remove()
    assert batch_sizes == [8] * STEPS + [1] * STEPS


def test_prompt_embeds_and_callback_interrupt(reference):
    pipe = dreambooth(reference("sd1"))
    embeds, negative = pipe.encode_prompt("sks dog", torch.device("cpu"), 1, True, "blurry")
    common = dict(num_inference_steps=STEPS, output_type="np", generator=None)
    by_text = pipe("{token} {class}", negative_prompt="blurry", **{**common, "generator": gen(3)}).images
    by_embeds = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, **{**common, "generator": gen(3)}).images
    np.testing.assert_array_equal(by_text, by_embeds)

    seen = []

    def stop_after_two(p, step, timestep, tensors):
        seen.append((step, sorted(tensors), tuple(tensors["prompt_embeds"].shape)))
        if step == 1:
            p._interrupt = True
        return {"latents": tensors["latents"] * 1.0}

    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        pipe(
            "{token}",
            num_inference_steps=5,
            output_type="latent",
            callback_on_step_end=stop_after_two,
            callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
        )
    finally:
        handle.remove()
    assert len(calls) == 2 and [s[0] for s in seen] == [0, 1]
    assert seen[0][1] == ["latents", "prompt_embeds"] and seen[0][2][0] == 2  # uncond + cond
    with pytest.raises(ValueError, match="has to be in"):  # diffusers' own check_inputs
        pipe("{token}", num_inference_steps=1, callback_on_step_end_tensor_inputs=["noise_pred"])


def test_placeholders_and_long_prompts(reference):
    assert expand_prompt(["{token} {class}", "plain"], "sks", "cat") == ["sks cat", "plain"]
    ref = reference("sd1")
    pipe = dreambooth(ref)
    bare = DreamBoothPipeline.from_components(ref)
    with pytest.raises(ValueError, match=r"uses \{token\} .* instance_token=\.\.\. in Python .* --token to `hfvision"):
        bare("a photo of {token}", num_inference_steps=1)
    with pytest.raises(ValueError, match=r"uses \{class\} .* class_noun=\.\.\. .* --class-noun"):
        bare("a photo of a {class}", num_inference_steps=1)
    long_prompt = "a photo of {token} " + "very " * 90 + "detailed"
    for clip_skip in (None, 1):  # the clip_skip path is hfvision's own code (see encode_prompt): same warning
        with diffusers_warnings() as records:
            pipe(long_prompt, num_inference_steps=1, output_type="latent", clip_skip=clip_skip)
        messages = [r.getMessage() for r in records]
        assert len(messages) == 1 and "truncated because CLIP can only handle sequences up to 77" in messages[0]
        assert records[0].name == "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion"
    actual = pipe(long_prompt, num_inference_steps=2, output_type="np", generator=gen(4)).images
    expected = ref(
        long_prompt.replace("{token}", "sks"), num_inference_steps=2, output_type="np", generator=gen(4)
    ).images
    assert np.abs(expected - actual).max() <= 1e-5


@pytest.mark.parametrize(
    ("size", "message"),
    [(dict(height=500), "height=500 must be a positive multiple of 8; try 496 or 504"), (dict(width=-8), "width=-8")],
)
def test_bad_sizes_suggest_valid_ones(reference, size, message):
    with pytest.raises(ValueError, match=message):
        dreambooth(reference("sd1"))("{token}", num_inference_steps=1, **size)


def test_incompatible_controlnet_refused(reference):
    ref = reference("sd1")
    with pytest.raises(ValueError, match="cross_attention_dim is 64 but the UNet's is 32"):
        dreambooth(ref, controlnet=tiny_controlnet("sdxl"))
    pipe = dreambooth(ref, controlnet=tiny_controlnet("sd1"))
    pipe.controlnet = tiny_controlnet("sdxl")  # swapped after construction: refused before running
    with pytest.raises(ValueError, match="does not match this pipeline's base model"):
        pipe("{token}", control_image=control_photo(), num_inference_steps=1)
    with pytest.raises(ValueError, match="has no ControlNet"):
        dreambooth(ref)("{token}", control_image=control_photo(), num_inference_steps=1)
    with pytest.raises(ValueError, match="pass `control_image`"):
        dreambooth(ref, controlnet=tiny_controlnet("sd1"))("{token}", num_inference_steps=1)
    with pytest.raises(ValueError, match="SDXL"):
        DreamBoothPipeline.from_components(tiny_sd_pipeline("sdxl"))
    from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline

    with pytest.raises(ValueError, match="missing text_encoder_2, tokenizer_2"):
        DreamBoothXLPipeline.from_components(ref)


def test_controlnet_check_is_one_function():
    """The registry applies the rule of the file shipped with saved pipelines, not a copy of it."""
    from hfvision.models import controlnets
    from hfvision.pipelines import controlnet_utils

    assert controlnets.controlnet_mismatch is controlnet_utils.controlnet_mismatch


def test_save_pretrained_round_trip(reference, tmp_path):
    pipe = dreambooth(reference("sd2"), controlnet=active_controlnet("sd2"))
    pipe.save_pretrained(tmp_path / "out")
    code = {p.name for p in (tmp_path / "out").glob("*.py")}
    assert code == {"dreambooth.py", "dreambooth_utils.py", "controlnet_utils.py"}
    loaded = DreamBoothPipeline.from_pretrained(tmp_path / "out")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is DreamBoothPipeline and loaded.controlnet is not None
    assert (loaded.config.instance_token, loaded.config.class_noun, loaded.config.family) == ("sks", "dog", "sd2")
    kwargs = dict(control_image=control_photo(), num_inference_steps=2, output_type="np")
    np.testing.assert_array_equal(
        pipe("{token}", generator=gen(5), **kwargs).images, loaded("{token}", generator=gen(5), **kwargs).images
    )
    # model_index.json names the shipped module for diffusers' remote-code loading ...
    index = json.loads((tmp_path / "out" / "model_index.json").read_text())
    assert index["_class_name"] == ["dreambooth", "DreamBoothPipeline"] and index["instance_token"] == "sks"
    from diffusers import DiffusionPipeline

    with pytest.raises(ValueError, match=r"(?s)custom code in dreambooth.py.*trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(tmp_path / "out")  # refused before any of that code runs
    # ... while hfvision's own loaders use the installed class; config values can be overridden at load time
    retokened = DreamBoothPipeline.from_pretrained(tmp_path / "out", instance_token="zwx")
    assert type(retokened) is DreamBoothPipeline and retokened.instance_token == "zwx"
    from hfvision.models import load_pipeline

    assert type(load_pipeline(tmp_path / "out")) is DreamBoothPipeline


def test_guidance_distilled_unet_equals_diffusers():
    """A UNet with ``time_cond_proj_dim`` (LCM-style) takes the guidance embedding instead of a second batch half."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from hfvision.testing import tiny_sd_components

    components = tiny_sd_components("sd1")
    torch.manual_seed(0)
    components["unet"] = UNet2DConditionModel(**{**components["unet"].config, "time_cond_proj_dim": 16}).eval()
    ref = StableDiffusionPipeline(**components, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=STEPS, guidance_scale=4.0, output_type="np")
    expected = ref("sks dog", generator=gen(6), **kwargs).images
    actual = dreambooth(ref)("{token} {class}", generator=gen(6), **kwargs).images
    assert np.abs(expected - actual).max() <= 1e-5


def test_lora_weights_load_like_diffusers(tmp_path):
    """LoRA files (what LoRA DreamBooth produces) load through diffusers' mixin and scale like in diffusers."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = tiny_sd_pipeline("sd1")
    torch.manual_seed(0)
    donor.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    type(donor).save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(donor.unet))
    ref, pipe = tiny_sd_pipeline("sd1"), dreambooth(tiny_sd_pipeline("sd1"))
    for p in (ref, pipe):
        p.set_progress_bar_config(disable=True)
        p.load_lora_weights(tmp_path)
    kwargs = dict(num_inference_steps=STEPS, output_type="np", cross_attention_kwargs={"scale": 0.5})
    expected = ref("sks dog", generator=gen(8), **kwargs).images
    actual = pipe("{token} {class}", generator=gen(8), **kwargs).images
    assert np.abs(expected - actual).max() <= 1e-5
    plain = dreambooth(tiny_sd_pipeline("sd1"))(
        "{token} {class}", generator=gen(8), num_inference_steps=STEPS, output_type="np"
    ).images
    assert np.abs(plain - actual).max() > 1e-3  # the LoRA is active
