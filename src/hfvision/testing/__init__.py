"""Offline test kit: tiny seeded models built from configs, a real CLIP tokenizer, sample photos and a
local Hub-compatible server. Public, so users can test their own code against hfvision without downloads.

>>> from hfvision.testing import tiny_sd_pipeline, clip_tokenizer
>>> pipe = tiny_sd_pipeline("sd1")
"""

from .classifiers import (
    GENDER_LABELS,
    fix_timm_config,
    save_tiny_timm_resnet,
    save_tiny_vit_classifier,
    tiny_timm_resnet,
    tiny_vit_classifier,
)
from .diffusion import (
    FAMILIES,
    save_tiny_sd,
    tiny_controlnet,
    tiny_scheduler,
    tiny_sd_components,
    tiny_sd_pipeline,
    tiny_text_config,
    tiny_unet,
    tiny_vae,
)
from .images import sample_image
from .tokenizer import clip_tokenizer, clip_tokenizer_dir

__all__ = [
    "FAMILIES",
    "GENDER_LABELS",
    "LocalHubServer",
    "clip_tokenizer",
    "clip_tokenizer_dir",
    "fix_timm_config",
    "hub_env",
    "sample_image",
    "save_tiny_sd",
    "save_tiny_timm_resnet",
    "save_tiny_vit_classifier",
    "tiny_controlnet",
    "tiny_scheduler",
    "tiny_sd_components",
    "tiny_sd_pipeline",
    "tiny_text_config",
    "tiny_timm_resnet",
    "tiny_unet",
    "tiny_vae",
    "tiny_vit_classifier",
]


def __getattr__(name):
    if name in ("LocalHubServer", "hub_env"):
        from . import hub_server

        return getattr(hub_server, name)
    raise AttributeError(name)
