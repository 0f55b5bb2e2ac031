"""``--output_kohya_format`` on Flux.1 LoRA runs: the kohya-Flux file (ComfyUI's layout) written beside diffusers'
file must load through diffusers' own kohya-Flux reader into the same model, carry the ModelSpec header of the right
Flux variant, and convert back to the identical tensors.

diffusers' kohya-Flux reader splits a single block's fused ``linear1`` at Flux.1's real widths, so these tiny runs
adapt the double blocks only (the single-block layout is covered at real widths in tests/conversion/test_lora_flux.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hfvision.training.dreambooth.lora import KOHYA_LORA_WEIGHTS_NAME, LORA_WEIGHTS_NAME

# the double block's attention (image and text streams): module names a single block does not have
DOUBLE_BLOCK_LAYERS = ",".join(
    [
        "transformer_blocks.0.attn.to_q",
        "transformer_blocks.0.attn.to_k",
        "transformer_blocks.0.attn.to_v",
        "attn.to_out.0",
        "attn.add_q_proj",
        "attn.add_k_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
    ]
)


def _header(path) -> dict:
    with safe_open(path, "pt") as f:
        return dict(f.metadata())


def _render(pipe) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(0)
    out = pipe(
        "a photo of sks person",
        height=32,
        width=32,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=generator,
        output_type="np",
    )
    return out.images[0]


def _train(flow_kwargs, train_in_process, variant: str, **overrides):
    kwargs = flow_kwargs(
        f"flux-{variant}",
        prior=False,
        use_lora=True,
        rank=4,
        lora_alpha=8,
        lora_layers=DOUBLE_BLOCK_LAYERS,
        output_kohya_format=True,
        learning_rate=5e-2,
    )
    kwargs.update(overrides)
    return train_in_process(kwargs)


@pytest.mark.slow  # ~25 s: training, three pipeline loads, fusing, conversion back
def test_flux_dev_kohya_file_loads_like_the_peft_file(flow_model_dir, flow_kwargs, train_in_process):
    """Flux-dev LoRA with CLIP LoRA: diffusers' kohya-Flux reader gives the image of the diffusers file; the kohya
    file converts back to the identical tensors and adapter configs."""
    from diffusers import FluxPipeline

    from hfvision.conversion.lora import convert_lora

    _, result = _train(flow_kwargs, train_in_process, "dev", train_text_encoder=True)
    out = result.output_dir
    kohya_path, peft_path = out / KOHYA_LORA_WEIGHTS_NAME, out / LORA_WEIGHTS_NAME
    kohya = load_file(kohya_path)
    # ComfyUI's names: fused qkv of each stream (rank 3 x 4), CLIP under lora_te1_
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape[0] == 12
    assert float(kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 24.0  # alpha/rank 8/4 kept: 24/12
    assert any(k.startswith("lora_te1_text_model_encoder_layers_") for k in kohya)
    assert not any("single_blocks" in k for k in kohya)
    header = _header(kohya_path)
    assert header["modelspec.architecture"] == "flux-1-dev/lora"
    assert header["modelspec.architecture"] == _header(peft_path)["modelspec.architecture"]

    base = _render(FluxPipeline.from_pretrained(flow_model_dir("flux-dev")))
    from_peft = FluxPipeline.from_pretrained(flow_model_dir("flux-dev"))
    from_peft.load_lora_weights(out, weight_name=LORA_WEIGHTS_NAME)
    expected = _render(from_peft)
    assert np.abs(expected - base).max() > 1e-3  # the trained LoRA changes the image
    from_kohya = FluxPipeline.from_pretrained(flow_model_dir("flux-dev"))
    from_kohya.load_lora_weights(str(kohya_path))  # diffusers' kohya-Flux converter
    np.testing.assert_allclose(_render(from_kohya), expected, atol=1e-5)
    # the same adapted weights: fused into the base, transformer and CLIP agree weight by weight
    from_peft.fuse_lora()
    from_kohya.fuse_lora()
    for part in ("transformer", "text_encoder"):
        fused_a, fused_b = getattr(from_peft, part).state_dict(), getattr(from_kohya, part).state_dict()
        weights = [k for k in fused_a if "lora_" not in k]
        assert max((fused_a[k] - fused_b[k]).abs().max().item() for k in weights) < 1e-6, part

    back = out / "back.safetensors"
    convert_lora(kohya_path, back, to="diffusers")
    original, converted = load_file(peft_path), load_file(back)
    assert original.keys() == converted.keys()
    assert all(torch.equal(original[k], converted[k]) for k in original)
    adapters = json.loads(_header(back)["lora_adapter_metadata"])
    assert adapters == json.loads(_header(peft_path)["lora_adapter_metadata"])


def test_flux_schnell_kohya_file_has_schnell_modelspec(flow_model_dir, flow_kwargs, train_in_process):
    """schnell (no guidance embedding) is recorded as flux-1-schnell in both files; diffusers' kohya-Flux reader
    renders the image of the diffusers file."""
    from diffusers import FluxPipeline

    _, result = _train(flow_kwargs, train_in_process, "schnell")
    kohya_path = result.output_dir / KOHYA_LORA_WEIGHTS_NAME
    assert _header(kohya_path)["modelspec.architecture"] == "flux-1-schnell/lora"
    assert _header(result.output_dir / LORA_WEIGHTS_NAME)["modelspec.architecture"] == "flux-1-schnell/lora"
    from_peft = FluxPipeline.from_pretrained(flow_model_dir("flux-schnell"))
    from_peft.load_lora_weights(result.output_dir, weight_name=LORA_WEIGHTS_NAME)
    from_kohya = FluxPipeline.from_pretrained(flow_model_dir("flux-schnell"))
    from_kohya.load_lora_weights(str(kohya_path))
    np.testing.assert_allclose(_render(from_kohya), _render(from_peft), atol=1e-5)
