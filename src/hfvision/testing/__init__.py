"""Offline test kit: tiny seeded models built from configs, a real CLIP tokenizer, sample photos and a
local Hub-compatible server. Public, so users can test their own code against hfvision without downloads.

Names load lazily: ``from hfvision.testing import sample_image`` does not import torch.

>>> from hfvision.testing import tiny_sd_pipeline, clip_tokenizer
>>> pipe = tiny_sd_pipeline("sd1")
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "classifiers": [
        "GENDER_LABELS",
        "fix_timm_config",
        "save_tiny_timm_resnet",
        "save_tiny_vit_classifier",
        "tiny_timm_resnet",
        "tiny_vit_classifier",
    ],
    "diffusion": [
        "FAMILIES",
        "save_tiny_sd",
        "tiny_controlnet",
        "tiny_scheduler",
        "tiny_sd_components",
        "tiny_sd_pipeline",
        "tiny_text_config",
        "tiny_unet",
        "tiny_vae",
    ],
    "flow": [
        "FLUX_VARIANTS",
        "SD3_VARIANTS",
        "save_tiny_flux",
        "save_tiny_sd3",
        "tiny_flow_vae",
        "tiny_flux_components",
        "tiny_flux_pipeline",
        "tiny_flux_transformer",
        "tiny_sd3_components",
        "tiny_sd3_pipeline",
        "tiny_sd3_transformer",
        "tiny_t5_encoder",
    ],
    "hub_server": ["LocalHubServer", "hub_env"],
    "embedders": ["save_tiny_clip_embedder", "save_tiny_dino_embedder", "tiny_clip_embedder", "tiny_dino_embedder"],
}
_WHERE = {name: f"{__name__}.{module}" for module, names in _EXPORTS.items() for name in names}
# library pieces the kit re-exports (they live where the library uses them)
_WHERE.update(
    sample_image="hfvision.data.samples",
    clip_tokenizer="hfvision.utils.clip_vocab",
    clip_tokenizer_dir="hfvision.utils.clip_vocab",
    t5_tokenizer="hfvision.utils.t5_vocab",
)

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
