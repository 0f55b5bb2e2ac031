"""Tiny, seeded Stable Diffusion components (SD 1.x, SD 2.x v-prediction, SDXL) and a tiny ControlNet.

Each family keeps the structural traits that matter to training and conversion (attention layout,
linear projections, prediction type, SDXL's second text encoder and size conditioning) at ~1 M
parameters, so a 64x64 image takes a few milliseconds on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..models.families import FAMILIES as FAMILIES_TABLE
from ..models.families import UNET_FAMILIES
from ..utils.clip_vocab import clip_tokenizer

FAMILIES = UNET_FAMILIES

# Tiny sizes per family; the traits that tell the families apart (linear attention projections, SDXL's size/text
# conditioning) come from the family table. The tiny SD2 predicts v like SD 2.1-768, so v targets are exercised.
_UNET_BASE = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    sample_size=32,
    in_channels=4,
    out_channels=4,
    norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=(2, 4),
)
_TINY = {
    "sd1": dict(unet=dict(attention_head_dim=4), text=dict(hidden_act="quick_gelu"), prediction_type="epsilon"),
    "sd2": dict(unet={}, text=dict(hidden_act="gelu"), prediction_type="v_prediction"),
    "sdxl": dict(
        unet=dict(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,  # text_encoder (32) + text_encoder_2 (32) hidden states, concatenated
            transformer_layers_per_block=(1, 2),
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop ids + pooled text embedding
        ),
        text=dict(hidden_act="gelu"),
        prediction_type="epsilon",
    ),
}


def _unet_config(family: str) -> dict:
    """The tiny UNet config of ``family``: shared sizes, the family's tiny overrides and its telling traits."""
    traits = {k: v for k, v in FAMILIES_TABLE[family].unet_traits.items() if v}  # leave defaults unset
    return {**_UNET_BASE, **_TINY[family]["unet"], **traits}


def _check_family(family: str) -> None:
    if family not in _TINY:
        raise ValueError(f"family={family!r} is not one of {FAMILIES}")


def tiny_text_config(**overrides):
    from transformers import CLIPTextConfig

    kwargs = dict(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        layer_norm_eps=1e-5,
    )
    kwargs.update(overrides)
    return CLIPTextConfig(**kwargs)


def tiny_unet(family: str = "sd1", seed: int = 0):
    """A seeded ``UNet2DConditionModel`` with ``family``'s layout."""
    from diffusers import UNet2DConditionModel

    _check_family(family)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**_unet_config(family))


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
    )


def tiny_scheduler(family: str = "sd1"):
    from diffusers import DDIMScheduler

    _check_family(family)
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=_TINY[family]["prediction_type"],
    )


def tiny_sd_components(family: str = "sd1", seed: int = 0) -> dict:
    """The components of a tiny pipeline of ``family`` (``"sd1"``, ``"sd2"`` or ``"sdxl"``), seeded.

    >>> components = tiny_sd_components("sd2")
    >>> components["scheduler"].config.prediction_type
    'v_prediction'
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _check_family(family)
    text_overrides = _TINY[family]["text"]
    torch.manual_seed(seed + 1)
    components = {
        "unet": tiny_unet(family, seed),
        "vae": tiny_vae(seed + 2),
        "text_encoder": CLIPTextModel(tiny_text_config(**text_overrides)),
        "tokenizer": clip_tokenizer(),
        "scheduler": tiny_scheduler(family),
    }
    if family == "sdxl":
        torch.manual_seed(seed + 3)
        components["text_encoder_2"] = CLIPTextModelWithProjection(tiny_text_config(**text_overrides))
        components["tokenizer_2"] = clip_tokenizer()
    else:
        components.update(safety_checker=None, feature_extractor=None, image_encoder=None)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in components:
            components[name].eval()
    return components


def tiny_sd_pipeline(family: str = "sd1", seed: int = 0):
    """The family's diffusers pipeline (``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``) built from tiny
    components."""
    import diffusers

    components = tiny_sd_components(family, seed)
    spec = FAMILIES_TABLE[family]
    extra = {"requires_safety_checker": False} if spec.safety_checker else {}
    return getattr(diffusers, spec.pipeline_class)(**components, **extra)


def tiny_controlnet(family: str = "sd1", seed: int = 0):
    """A seeded tiny ``ControlNetModel`` matching :func:`tiny_unet` of the same family."""
    from diffusers import ControlNetModel

    _check_family(family)
    unet_cfg = _unet_config(family)
    torch.manual_seed(seed)
    kwargs = dict(
        block_out_channels=_UNET_BASE["block_out_channels"],
        layers_per_block=_UNET_BASE["layers_per_block"],
        in_channels=4,
        down_block_types=unet_cfg["down_block_types"],
        cross_attention_dim=unet_cfg["cross_attention_dim"],
        attention_head_dim=unet_cfg["attention_head_dim"],
        conditioning_embedding_out_channels=(16, 32),
        norm_num_groups=32,
    )
    for key in (
        "use_linear_projection",
        "transformer_layers_per_block",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    ):
        if key in unet_cfg:
            kwargs[key] = unet_cfg[key]
    return ControlNetModel(**kwargs).eval()


def save_tiny_sd(out_dir: str | os.PathLike, family: str = "sd1", seed: int = 0) -> Path:
    """Save a tiny pipeline of ``family`` in diffusers format (safetensors) and return the directory."""
    pipe = tiny_sd_pipeline(family, seed)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)
