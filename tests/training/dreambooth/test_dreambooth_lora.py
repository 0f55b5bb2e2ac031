"""LoRA (PEFT) on the UNet attention projections and the text encoder: the saved pytorch_lora_weights.safetensors
reproduces the in-training model through diffusers' load_lora_weights; merge_lora writes a fused pipeline too."""

from __future__ import annotations

import json

import numpy as np
import torch


def _render(pipe, size: int) -> np.ndarray:
    """ "a photo of sks person", two steps at ``size`` px from a CPU generator seeded 0, as float arrays."""
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a photo of sks person", num_inference_steps=2, height=size, width=size, output_type="np", generator=generator
    ).images


def _trained_untouched_loaded(trainer, result, base_dir, size: int):
    """Images of the in-training model, of the base model, and of the base with the saved LoRA file loaded."""
    from diffusers import DiffusionPipeline

    base = DiffusionPipeline.from_pretrained(base_dir)
    untouched = _render(base, size)
    base.load_lora_weights(result.output_dir)
    return _render(trainer.build_pipeline(), size), untouched, _render(base, size)


def test_lora_file_reproduces_the_trained_model(tiny_kwargs, tiny_model_dir, train_in_process):
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    kwargs = tiny_kwargs(
        use_lora=True,
        rank=4,
        lora_alpha=8,
        train_text_encoder=True,
        merge_lora=True,
        max_train_steps=3,
        learning_rate=1e-2,
    )
    trainer, result = train_in_process(kwargs)
    expected, untouched, got = _trained_untouched_loaded(trainer, result, tiny_model_dir("sd1"), 64)
    assert np.abs(expected - got).max() <= 1e-6
    assert np.abs(untouched - got).max() > 1e-3  # the adapters did learn something

    with safe_open(result.lora_weights, "pt") as f:
        keys, metadata = list(f.keys()), f.metadata()
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}
    assert all("lora" in k for k in keys)
    unet_meta = json.loads(metadata["lora_adapter_metadata"])
    assert unet_meta["unet.r"] == 4 and unet_meta["unet.lora_alpha"] == 8
    assert {"to_q", "to_k", "to_v", "to_out.0"} <= set(unet_meta["unet.target_modules"])

    # merge_lora: the same folder also holds the fused pipeline, loadable without PEFT
    merged = DiffusionPipeline.from_pretrained(result.output_dir)
    fused = _render(merged, 64)
    assert np.abs(fused - got).max() <= 1e-4
    assert "lora" not in " ".join(merged.unet.state_dict())
    card = (result.output_dir / "README.md").read_text()
    assert "LoRA (rank 4)" in card


def test_dora_run_reproduces_the_trained_model(tiny_kwargs, tiny_model_dir, train_in_process):
    """--use_dora: PEFT's DoRA adapters train, and diffusers' load_lora_weights restores exactly the trained model."""
    from safetensors import safe_open

    kwargs = tiny_kwargs(use_lora=True, use_dora=True, max_train_steps=2, learning_rate=1e-2, resolution=32)
    trainer, result = train_in_process(kwargs)
    expected, untouched, got = _trained_untouched_loaded(trainer, result, tiny_model_dir("sd1"), 32)
    assert np.abs(expected - got).max() <= 1e-6
    assert np.abs(untouched - got).max() > 1e-4
    with safe_open(result.lora_weights, "pt") as f:
        assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.use_dora"] is True
        assert any("magnitude" in k for k in f.keys())
