"""LoRA interop of the DreamBooth LoRA files: the kohya/AUTOMATIC1111 file gives the same images through diffusers'
load_lora_weights as the diffusers file, converts back to the same tensors, carries ModelSpec metadata; DoRA adapters
train, save, load and resume like LoRA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hfvision.conversion.lora import kohya_to_diffusers
from hfvision.conversion.modelspec import modelspec_metadata
from hfvision.testing import tiny_sd_pipeline
from hfvision.training.dreambooth.lora import (
    KOHYA_LORA_WEIGHTS_NAME,
    TEXT_ENCODER_TARGET_MODULES,
    UNET_TARGET_MODULES,
    add_lora,
    load_lora,
    save_lora,
)

CALL = dict(num_inference_steps=2, height=64, width=64, output_type="np")
PROMPT = "a photo of sks dog"
ARCHITECTURES = {
    "sd1": "stable-diffusion-v1/lora",
    "sd2": "stable-diffusion-v2-768-v/lora",  # the tiny SD2 is v-prediction, like SD 2.1-768
    "sdxl": "stable-diffusion-xl-v1-base/lora",
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(pipe, seed: int = 0) -> np.ndarray:
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **CALL).images


def text_encoders(pipe) -> list:
    return [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]


def adapted_pipeline(family: str, use_dora: bool = False, rank: int = 4, alpha: int = 8):
    """A tiny pipeline whose UNet and text encoders carry adapters with random (non-zero) weights; alpha != rank so a
    lost alpha shows."""
    pipe = tiny_sd_pipeline(family)
    add_lora(pipe.unet, rank, alpha, 0.0, UNET_TARGET_MODULES, use_dora=use_dora)
    for encoder in text_encoders(pipe):
        add_lora(encoder, rank, alpha, 0.0, TEXT_ENCODER_TARGET_MODULES, use_dora=use_dora)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (pipe.unet, *text_encoders(pipe)):
            for name, param in module.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
                elif "lora_magnitude_vector" in name:
                    param.mul_(1 + 0.2 * torch.rand(param.shape, generator=generator))
    return pipe


def prompt_embeds(pipe) -> list[torch.Tensor]:
    ids = pipe.tokenizer(
        PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return [encoder(ids).last_hidden_state for encoder in text_encoders(pipe)]


@pytest.mark.parametrize("family", ["sd1", pytest.param("sd2", marks=pytest.mark.slow), "sdxl"])
def test_kohya_file_gives_the_same_images_as_the_diffusers_file(family, tmp_path):
    trained = adapted_pipeline(family)
    prediction_type = trained.scheduler.config.prediction_type
    meta = modelspec_metadata(
        family,
        title="dog",
        trigger_phrase="sks dog",
        resolution=64,
        base_model="tiny",
        lora=True,
        prediction_type=prediction_type,
    )
    path = save_lora(tmp_path, family, trained.unet, text_encoders(trained), kohya=True, metadata=meta)
    kohya_path = tmp_path / KOHYA_LORA_WEIGHTS_NAME

    kohya = load_file(kohya_path)
    prefixes = {k.split("_")[1] for k in kohya}
    assert prefixes == ({"unet", "te1", "te2"} if family == "sdxl" else {"unet", "te"})
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in kohya)
    assert {float(v) for k, v in kohya.items() if k.endswith(".alpha")} == {8.0}  # the real alpha, not the rank
    assert any(k.startswith("lora_te") and "_text_model_encoder_layers_0_self_attn_q_proj" in k for k in kohya)

    for file in (path, kohya_path):
        with safe_open(file, "pt") as f:
            header = f.metadata()
        assert header["modelspec.architecture"] == ARCHITECTURES[family]
        assert header["modelspec.sai_model_spec"] == "1.0.0"
        assert header["modelspec.trigger_phrase"] == "sks dog" and header["modelspec.title"] == "dog"
        assert header["modelspec.resolution"] == "64x64"
        adapter_key = "hfvision.lora_adapter_metadata" if file == kohya_path else "lora_adapter_metadata"
        assert json.loads(header[adapter_key])["unet.lora_alpha"] == 8

    base = tiny_sd_pipeline(family)
    untouched, untouched_embeds = images(base), prompt_embeds(base)
    base.load_lora_weights(path)
    from_diffusers, diffusers_embeds = images(base), prompt_embeds(base)
    base.unload_lora_weights()
    base.load_lora_weights(kohya_path)
    from_kohya, kohya_embeds = images(base), prompt_embeds(base)

    assert np.abs(from_diffusers - images(trained)).max() <= 1e-6
    assert np.abs(from_kohya - from_diffusers).max() <= 1e-6
    assert np.abs(from_kohya - untouched).max() > 1e-3
    for got, want, before in zip(kohya_embeds, diffusers_embeds, untouched_embeds):
        assert torch.allclose(got, want, atol=1e-6) and not torch.allclose(got, before, atol=1e-3)

    # kohya -> diffusers gives back the original tensors and adapter configs
    back, configs = kohya_to_diffusers(kohya, json.loads(header["hfvision.lora_adapter_metadata"]))
    original = load_file(path)
    assert back.keys() == original.keys()
    assert all(torch.equal(back[k], original[k]) for k in original)
    rebuilt, rebuilt_configs = kohya_to_diffusers({k: v for k, v in kohya.items()})  # without hfvision's header
    assert all(torch.equal(rebuilt[k], original[k]) for k in original) and rebuilt.keys() == original.keys()
    assert rebuilt_configs["unet"]["r"] == 4 and rebuilt_configs["unet"]["lora_alpha"] == 8
    assert set(rebuilt_configs["unet"]["target_modules"]) == {
        k.removeprefix("unet.").rsplit(".lora.down", 1)[0]
        for k in original
        if k.endswith("lora.down.weight") and k.startswith("unet.")
    }


@pytest.mark.parametrize("family", ["sd1", pytest.param("sdxl", marks=pytest.mark.slow)])
def test_dora_trains_saves_loads_and_resumes(family, tmp_path):
    pipe = adapted_pipeline(family, use_dora=True)
    unet = pipe.unet
    magnitudes = {n: p.detach().clone() for n, p in unet.named_parameters() if "lora_magnitude_vector" in n}
    assert magnitudes
    # two optimisation steps on a denoising-style loss: the magnitudes are trained too
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    hidden = torch.randn(1, 4, unet.config.cross_attention_dim, generator=generator)
    extra = {}
    if family == "sdxl":
        extra = {
            "added_cond_kwargs": {
                "text_embeds": torch.randn(1, 32, generator=generator),
                "time_ids": torch.randn(1, 6, generator=generator),
            }
        }
    for _ in range(2):
        loss = unet(sample, 10, hidden, **extra).sample.pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = {n: p for n, p in unet.named_parameters() if "lora_magnitude_vector" in n}
    assert any(not torch.equal(trained[n], v) for n, v in magnitudes.items())

    path = save_lora(tmp_path, family, unet, text_encoders(pipe), kohya=True)
    with safe_open(path, "pt") as f:
        assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.use_dora"] is True
        assert any("lora_magnitude_vector" in k for k in f.keys())
    expected = images(pipe)

    base = tiny_sd_pipeline(family)
    base.load_lora_weights(tmp_path)
    assert np.abs(images(base) - expected).max() <= 1e-6

    # resume: fresh models with the same adapters get bit-identical adapter weights back
    fresh = tiny_sd_pipeline(family)
    add_lora(fresh.unet, 4, 8, 0.0, UNET_TARGET_MODULES, use_dora=True)
    for encoder in text_encoders(fresh):
        add_lora(encoder, 4, 8, 0.0, TEXT_ENCODER_TARGET_MODULES, use_dora=True)
    load_lora(tmp_path, family, fresh.unet, text_encoders(fresh))
    for before, after in zip((pipe.unet, *text_encoders(pipe)), (fresh.unet, *text_encoders(fresh))):
        want = {n: p for n, p in before.named_parameters() if "lora" in n}
        got = {n: p for n, p in after.named_parameters() if "lora" in n}
        assert want.keys() == got.keys() and all(torch.equal(got[n], want[n]) for n in want)

    # the kohya file keeps the magnitudes (dora_scale, one per output feature) and converts back exactly
    kohya = load_file(tmp_path / KOHYA_LORA_WEIGHTS_NAME)
    scales = {k: v for k, v in kohya.items() if k.endswith(".dora_scale")}
    assert len(scales) == len(magnitudes) + sum(
        1 for e in text_encoders(pipe) for n, _ in e.named_parameters() if "lora_magnitude_vector" in n
    )
    assert all(v.ndim == 2 and v.shape[1] == 1 for v in scales.values())
    back, configs = kohya_to_diffusers(kohya)
    original = load_file(path)
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in original)
    assert configs["unet"]["use_dora"] is True


def test_sd2_v_lora_modelspec_is_the_768_v_architecture():
    meta = modelspec_metadata(
        "sd2",
        title="t",
        trigger_phrase=None,
        resolution=768,
        base_model=None,
        lora=True,
        prediction_type="v_prediction",
    )
    assert meta["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
