"""Tiny, seeded Flux.1 and Stable Diffusion 3 pipelines (flow matching), offline.

Each keeps the traits of the real model that training and loading depend on, at a few hundred thousand parameters:

* Flux.1: `FluxTransformer2DModel` on 2x2-packed latents (``in_channels`` 64 = 16 latent channels x 4, patch 1),
  rotary axes summing to the head size, guidance embedding for ``"dev"`` (not ``"schnell"``); a CLIP text encoder
  (pooled output) and a T5 encoder (sequence); a 16-channel `AutoencoderKL` with Flux's shift/scale and a
  downsampling factor of 8; `FlowMatchEulerDiscreteScheduler` with Flux's dynamic shifting (dev) or none (schnell).
* SD3 / SD3.5: `SD3Transformer2DModel` (patch 2, 16 latent channels, joint attention over CLIP+CLIP+T5 tokens;
  ``"sd3.5"`` adds QK RMS-norm and a dual-attention layer as in SD3.5 medium); two `CLIPTextModelWithProjection`
  whose pooled outputs concatenate to the transformer's pooled width; a T5 encoder as wide as the two CLIP hidden
  states together; SD3's VAE shift/scale; the scheduler with ``shift=3.0``.

Tokenizers are offline: CLIP's real BPE (`hfvision.utils.clip_vocab`) and a T5 Unigram stand-in
(`hfvision.utils.t5_vocab`). Saved pipelines load with stock ``FluxPipeline.from_pretrained`` /
``StableDiffusion3Pipeline.from_pretrained``. Generate at 64x64 (the defaults' latent grid is 8x8).

>>> from hfvision.testing import tiny_flux_pipeline
>>> pipe = tiny_flux_pipeline("dev")
>>> image = pipe("a photo of a dog", height=64, width=64, num_inference_steps=2, output_type="np").images[0]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..models.families import FAMILIES
from ..utils.clip_vocab import clip_tokenizer
from ..utils.t5_vocab import DEFAULT_VOCAB_SIZE, t5_tokenizer
from .diffusion import tiny_text_config

FLUX_VARIANTS = ("dev", "schnell")
SD3_VARIANTS = ("sd3", "sd3.5")

# Facts of the real checkpoints kept by the tiny ones (latent channels from the family table; the VAE's latent
# normalisation and the schedulers' configs as in black-forest-labs/FLUX.1-* and stabilityai/stable-diffusion-3*-*).
FLUX_VAE = dict(latent_channels=FAMILIES["flux"].latent_channels, scaling_factor=0.3611, shift_factor=0.1159)
SD3_VAE = dict(latent_channels=FAMILIES["sd3"].latent_channels, scaling_factor=1.5305, shift_factor=0.0609)
_FLUX_SHIFTING = dict(base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
FLUX_SCHEDULERS = {
    "dev": dict(shift=3.0, use_dynamic_shifting=True, **_FLUX_SHIFTING),
    "schnell": dict(shift=1.0, use_dynamic_shifting=False, **_FLUX_SHIFTING),
}
SD3_SCHEDULER = dict(shift=3.0)


def _check(variant: str, variants: tuple[str, ...], what: str) -> None:
    if variant not in variants:
        raise ValueError(f"{what} variant={variant!r} is not one of {variants}")


def tiny_t5_encoder(d_model: int = 32, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE):
    """A seeded 2-layer `T5EncoderModel` (T5 v1.1 layout: gated-GELU feed-forward, untied head) of width
    ``d_model``, sized for `hfvision.utils.t5_vocab.t5_tokenizer`."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


def tiny_flow_vae(latent_channels: int, scaling_factor: float, shift_factor: float, seed: int = 0):
    """A seeded `AutoencoderKL` with four blocks (downsampling factor 8, as the real Flux/SD3 VAEs), no quant convs."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()


def tiny_flux_transformer(variant: str = "dev", seed: int = 0):
    """A seeded `FluxTransformer2DModel`: one double and one single block, 2 heads of 16, rotary axes (4, 4, 8)."""
    from diffusers import FluxTransformer2DModel

    _check(variant, FLUX_VARIANTS, "Flux")
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=FLUX_VAE["latent_channels"] * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 width
        pooled_projection_dim=32,  # CLIP pooled width
        guidance_embeds=variant == "dev",
        axes_dims_rope=(4, 4, 8),
    ).eval()


def tiny_flux_components(variant: str = "dev", seed: int = 0) -> dict:
    """The components of a tiny `FluxPipeline` (``"dev"`` or ``"schnell"``), seeded.

    >>> tiny_flux_components("schnell")["transformer"].config.guidance_embeds
    False
    """
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModel

    _check(variant, FLUX_VARIANTS, "Flux")
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(tiny_text_config()).eval()
    return {
        "transformer": tiny_flux_transformer(variant, seed),
        "vae": tiny_flow_vae(**FLUX_VAE, seed=seed + 2),
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": tiny_t5_encoder(32, seed + 3),
        "tokenizer_2": t5_tokenizer(model_max_length=512 if variant == "dev" else 256),
        "scheduler": FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULERS[variant]),
        "image_encoder": None,
        "feature_extractor": None,
    }


def tiny_flux_pipeline(variant: str = "dev", seed: int = 0):
    """A diffusers `FluxPipeline` built from `tiny_flux_components`."""
    from diffusers import FluxPipeline

    return FluxPipeline(**tiny_flux_components(variant, seed))


def tiny_sd3_transformer(variant: str = "sd3", seed: int = 0):
    """A seeded `SD3Transformer2DModel`: 2 joint blocks, 4 heads of 8, patch 2, positions for up to 256 px."""
    from diffusers import SD3Transformer2DModel

    _check(variant, SD3_VARIANTS, "SD3")
    sd35 = variant == "sd3.5"
    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=8,  # latent size of the default 64 px image
        patch_size=FAMILIES["sd3"].patch_size,
        in_channels=SD3_VAE["latent_channels"],
        out_channels=SD3_VAE["latent_channels"],
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,  # T5 width = the two CLIP hidden states side by side
        caption_projection_dim=32,  # = heads x head size
        pooled_projection_dim=64,  # the two CLIP pooled projections concatenated
        pos_embed_max_size=16,
        dual_attention_layers=(0,) if sd35 else (),
        qk_norm="rms_norm" if sd35 else None,
    ).eval()


def tiny_sd3_components(variant: str = "sd3", seed: int = 0) -> dict:
    """The components of a tiny `StableDiffusion3Pipeline` (``"sd3"`` or ``"sd3.5"``), seeded."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModelWithProjection

    _check(variant, SD3_VARIANTS, "SD3")
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModelWithProjection(tiny_text_config(hidden_act="gelu")).eval()
    torch.manual_seed(seed + 4)
    text_encoder_2 = CLIPTextModelWithProjection(tiny_text_config(hidden_act="gelu")).eval()
    return {
        "transformer": tiny_sd3_transformer(variant, seed),
        "scheduler": FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER),
        "vae": tiny_flow_vae(**SD3_VAE, seed=seed + 2),
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": clip_tokenizer(),
        "text_encoder_3": tiny_t5_encoder(64, seed + 3),
        "tokenizer_3": t5_tokenizer(),
        "image_encoder": None,
        "feature_extractor": None,
    }


def tiny_sd3_pipeline(variant: str = "sd3", seed: int = 0):
    """A diffusers `StableDiffusion3Pipeline` built from `tiny_sd3_components`."""
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(**tiny_sd3_components(variant, seed))


def save_tiny_flux(out_dir: str | os.PathLike, variant: str = "dev", seed: int = 0) -> Path:
    """Save a tiny Flux pipeline in diffusers format (safetensors) and return the directory."""
    tiny_flux_pipeline(variant, seed).save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def save_tiny_sd3(out_dir: str | os.PathLike, variant: str = "sd3", seed: int = 0) -> Path:
    """Save a tiny SD3 pipeline in diffusers format (safetensors) and return the directory."""
    tiny_sd3_pipeline(variant, seed).save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)
