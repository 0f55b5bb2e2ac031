"""The DreamBooth pipelines keep diffusers' whole contract: every constructor component (safety checker kept, as in
diffusers), every mixin, every `__call__` argument (legacy callbacks included) and `clip_skip`, which hfvision makes
work under transformers 5 with diffusers' intended math."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import (
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.loaders import (
    FromSingleFileMixin,
    IPAdapterMixin,
    StableDiffusionLoraLoaderMixin,
    StableDiffusionXLLoraLoaderMixin,
    TextualInversionLoaderMixin,
)
from dreambooth_testing import active_controlnet, control_photo, gen

from hfvision.pipelines.dreambooth import DreamBoothPipeline
from hfvision.pipelines.dreambooth_utils import CONTROL_ARGUMENTS
from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
from hfvision.testing import tiny_sd_components, tiny_sd_pipeline


def tiny_safety_parts():
    """A seeded tiny safety checker, its feature extractor and an IP-Adapter image encoder."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
            vision_config=vision,
            projection_dim=32,
        )
    ).eval()
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision)).eval()
    extractor = CLIPImageProcessor(crop_size=32, size=32)
    return checker, extractor, encoder


@pytest.mark.parametrize(
    ("ours", "parent", "mixins"),
    [
        (
            DreamBoothPipeline,
            StableDiffusionPipeline,
            (StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin, IPAdapterMixin, FromSingleFileMixin),
        ),
        (
            DreamBoothXLPipeline,
            StableDiffusionXLPipeline,
            (StableDiffusionXLLoraLoaderMixin, TextualInversionLoaderMixin, IPAdapterMixin, FromSingleFileMixin),
        ),
    ],
)
def test_signature_is_the_parents_plus_control_arguments(ours, parent, mixins):
    assert issubclass(ours, parent) and all(issubclass(ours, m) for m in mixins)

    def described(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__call__).parameters.values()]

    theirs, mine = described(parent), described(ours)
    assert theirs[-1][1] is inspect.Parameter.VAR_KEYWORD  # legacy callback / callback_steps travel in **kwargs
    added = [
        (name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default)
        for name, default in zip(CONTROL_ARGUMENTS, (None, 1.0, 0.0, 1.0))
    ]
    assert mine == theirs[:-1] + added + theirs[-1:]
    # constructor: every parent component and setting, plus controlnet and the DreamBooth identity
    parent_init = [p for p in inspect.signature(parent.__init__).parameters if p != "self"]
    own_init = [p for p in inspect.signature(ours.__init__).parameters if p != "self"]
    assert set(own_init) - set(parent_init) == {"controlnet", "instance_token", "class_noun", "family", "concepts"}
    assert set(parent_init) <= set(own_init)
    assert set(parent._optional_components) | {"controlnet"} == set(ours._optional_components)


def test_full_component_set_and_safety_checker_kept():
    checker, extractor, encoder = tiny_safety_parts()
    components = {
        **tiny_sd_components("sd1"),
        "safety_checker": checker,
        "feature_extractor": extractor,
        "image_encoder": encoder,
    }
    ref = StableDiffusionPipeline(**components)
    pipe = DreamBoothPipeline(**components, instance_token="sks", class_noun="dog")
    assert pipe.safety_checker is checker and pipe.feature_extractor is extractor and pipe.image_encoder is encoder
    assert pipe.config.requires_safety_checker is True
    for p in (ref, pipe):
        p.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=2, output_type="np")
    expected = ref("a photo of sks dog", generator=gen(0), **kwargs)
    actual = pipe("a photo of {token} {class}", generator=gen(0), **kwargs)
    assert isinstance(actual.nsfw_content_detected, list) and len(actual.nsfw_content_detected) == 1
    assert actual.nsfw_content_detected == expected.nsfw_content_detected
    assert (expected.images == actual.images).all()
    # from_components keeps the checker (diffusers' default) and drops it only when asked
    assert DreamBoothPipeline.from_components(ref).safety_checker is checker
    dropped = DreamBoothPipeline.from_components(ref, safety_checker=None, requires_safety_checker=False)
    assert dropped.safety_checker is None and dropped.config.requires_safety_checker is False
    assert dropped("a dog", num_inference_steps=1, output_type="np").nsfw_content_detected is None


def test_legacy_callback_and_step_end_callback_like_diffusers():
    ref = tiny_sd_pipeline("sd1")
    pipe = DreamBoothPipeline.from_components(ref, instance_token="sks")
    seen = {"ref": [], "ours": []}
    for name, p, prompt in (("ref", ref, "sks"), ("ours", pipe, "{token}")):
        p.set_progress_bar_config(disable=True)
        p(
            prompt,
            num_inference_steps=3,
            output_type="latent",
            generator=gen(1),
            callback_steps=1,
            callback=lambda i, t, latents, name=name: seen[name].append((i, int(t), latents.clone())),
        )
    assert [s[:2] for s in seen["ours"]] == [s[:2] for s in seen["ref"]] and len(seen["ours"]) == 3
    assert all(torch.equal(a[2], b[2]) for a, b in zip(seen["ours"], seen["ref"]))

    def stop_after_two(p, step, timestep, tensors):
        if step == 1:
            p._interrupt = True
        return tensors

    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        pipe("{token}", num_inference_steps=5, output_type="latent", callback_on_step_end=stop_after_two)
    finally:
        handle.remove()
    assert len(calls) == 2


def test_clip_skip_uses_the_penultimate_hidden_state_with_final_layer_norm():
    ref = tiny_sd_pipeline("sd1")
    pipe = DreamBoothPipeline.from_components(ref, instance_token="sks", class_noun="dog")
    pipe.set_progress_bar_config(disable=True)
    prompt = "a photo of sks dog"
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
        assert len(hidden) == 3  # embeddings + 2 layers
        for clip_skip in (1, 2):
            expected = pipe.text_encoder.final_layer_norm(hidden[-(clip_skip + 1)])
            embeds, negative = pipe.encode_prompt(
                "a photo of sks dog", torch.device("cpu"), 2, True, clip_skip=clip_skip
            )
            assert (
                embeds.shape == (2, 77, 32)
                and torch.equal(embeds[0], expected[0])
                and torch.equal(embeds[1], expected[0])
            )
            assert negative.shape == (2, 77, 32)
        plain = pipe.encode_prompt(prompt, torch.device("cpu"), 1, False)[0]
    assert (plain - expected).abs().max() > 1e-3  # clip_skip changes the embeddings

    kwargs = dict(num_inference_steps=2, output_type="pt", guidance_scale=5.0, negative_prompt="blurry")
    skipped = pipe.text_encoder.final_layer_norm(hidden[-2])
    expected_images = ref(prompt_embeds=skipped, generator=gen(2), **kwargs).images
    actual_images = pipe("a photo of {token} {class}", clip_skip=1, generator=gen(2), **kwargs).images
    assert torch.equal(expected_images, actual_images)
    if not hasattr(
        ref.text_encoder, "text_model"
    ):  # diffusers' own class fails here (diffusers 0.42.1 + transformers 5)
        with pytest.raises(AttributeError, match="text_model"):
            ref(prompt, clip_skip=1, num_inference_steps=1, output_type="latent")

    # with a ControlNet the call runs diffusers' ControlNet pipeline, which has the same bug: still works here
    controlnet = active_controlnet("sd1")
    controlled = DreamBoothPipeline.from_components(pipe, controlnet=controlnet)
    controlled.set_progress_bar_config(disable=True)
    stock = StableDiffusionControlNetPipeline(**ref.components, controlnet=controlnet, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    image = control_photo()
    expected_images = stock(prompt_embeds=skipped, image=image, generator=gen(3), **kwargs).images
    actual_images = controlled(
        "a photo of {token} {class}", control_image=image, clip_skip=1, generator=gen(3), **kwargs
    ).images
    assert torch.equal(expected_images, actual_images)


def test_controlnet_call_refuses_arguments_the_controlnet_pipeline_lacks():
    ref = tiny_sd_pipeline("sdxl")
    pipe = DreamBoothXLPipeline.from_components(ref, controlnet=active_controlnet("sdxl"))
    with pytest.raises(ValueError, match="guidance_rescale cannot be used with a ControlNet"):
        pipe("x", control_image=control_photo(), guidance_rescale=0.5, num_inference_steps=1)
    assert isinstance(
        pipe.controlnet_pipeline(StableDiffusionXLControlNetPipeline), StableDiffusionXLControlNetPipeline
    )
    assert pipe.controlnet_pipeline(StableDiffusionXLControlNetPipeline).unet is pipe.unet


def test_several_subjects_survive_save_and_load(tmp_path):
    from hfvision.pipelines.dreambooth import DreamBoothPipeline
    from hfvision.testing import tiny_sd_pipeline

    concepts = [
        {"token": "sks", "class_noun": "dog", "prompt": "a photo of sks dog"},
        {"token": "zwx", "class_noun": "cat", "prompt": "a photo of zwx cat"},
    ]
    pipe = DreamBoothPipeline.from_components(
        tiny_sd_pipeline("sd1"), instance_token="sks", class_noun="dog", concepts=concepts
    )
    pipe.save_pretrained(tmp_path)
    loaded = DreamBoothPipeline.from_pretrained(tmp_path)
    assert loaded.concepts == concepts and loaded.instance_token == "sks"
    assert DreamBoothPipeline.from_components(loaded).concepts == concepts  # carried over like the token
    assert DreamBoothPipeline.from_components(tiny_sd_pipeline("sd1")).concepts == []
