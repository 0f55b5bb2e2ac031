"""The model families hfvision knows, one record each: the single table the base-model registry, the DreamBooth
trainer, single-file conversion, ModelSpec headers, the ControlNet registry and the test kit read.

A family is an architecture, not a checkpoint: ``sd1`` (Stable Diffusion 1.x), ``sd2`` (2.x), ``sdxl``, ``flux``
(Flux.1) and ``sd3`` (SD3 / SD3.5). Checkpoints of a family are entries of :mod:`hfvision.models.registry`.
Pure data: importing this module loads neither torch nor diffusers.

>>> from hfvision.models.families import FAMILIES, get_family
>>> list(FAMILIES)
['sd1', 'sd2', 'sdxl', 'flux', 'sd3']
>>> get_family("sdxl").text_encoders
('text_encoder', 'text_encoder_2')
>>> get_family("flux").resolution_factor
16
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_COMPVIS = "https://github.com/CompVis/stable-diffusion"
_STABILITY = "https://github.com/Stability-AI/stablediffusion"
_SGM = "https://github.com/Stability-AI/generative-models"
_SD3 = "https://github.com/Stability-AI/sd3-ref"
_FLUX = "https://github.com/black-forest-labs/flux"


@dataclass(frozen=True)
class ModelSpecArchitecture:
    """One ``modelspec.architecture`` of a family (a family may have several, e.g. SD 2.x 512 and 768-v).

    Attributes:
        key (`str`): the name ``modelspec_metadata(family=...)`` and ``hfvision convert lora --family`` accept.
        family (`str`): the [`Family`] it belongs to.
        architecture (`str`): ``modelspec.architecture`` of the full model (``"/lora"`` is appended for adapters).
        resolution (`int`): native training resolution (square).
        prediction_type (`str`): ``modelspec.prediction_type`` (``"epsilon"``, ``"v"``, ``"flow"``).
    """

    key: str
    family: str
    architecture: str
    resolution: int
    prediction_type: str


@dataclass(frozen=True)
class Family:
    """What every checkpoint of one architecture family shares.

    Attributes:
        name (`str`): ``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"`` or ``"sd3"``.
        title (`str`): human name, for messages.
        pipeline_classes (`tuple[str]`): the ``model_index.json`` ``_class_name``s of this family's pipelines:
            diffusers' text-to-image class first (``pipeline_class``), then hfvision's subclass of it
            (``dreambooth_pipeline_class``), then others (image-to-image).
        num_text_encoders (`int`): text encoders (and tokenizers): ``text_encoder``, ``text_encoder_2``, ...
        resolution (`int`): native resolution of the family's first release.
        modelspec_implementation (`str`): ``modelspec.implementation``, the code base of the original weights.
        cross_attention_dim (`int`, *optional*): the real UNet's text-embedding width (UNet families).
        unet_traits (`Mapping`, *optional*): UNet config values that tell the UNet families apart.
        safety_checker (`bool`): the stock pipeline has ``safety_checker`` / ``feature_extractor`` components.
        denoiser (`str`): the trained network's component name (``"unet"`` or ``"transformer"``).
        prediction_type (`str`): training target of the family's first release (``"epsilon"``, ``"flow_matching"``).
        latent_channels (`int`): channels of the VAE latents.
        vae_scale (`int`): the VAE's downsampling factor.
        patch_size (`int`): pixels of latent per transformer token side (Flux's 2x2 latent packing counts as 2).
    """

    name: str
    title: str
    pipeline_classes: tuple[str, ...]
    num_text_encoders: int
    resolution: int
    modelspec_implementation: str
    cross_attention_dim: int | None = None
    unet_traits: Mapping[str, Any] | None = None
    safety_checker: bool = False
    denoiser: str = "unet"
    prediction_type: str = "epsilon"
    latent_channels: int = 4
    vae_scale: int = 8
    patch_size: int = 1

    @property
    def flow(self) -> bool:
        """Trained with flow matching (a transformer on VAE latents) instead of noise prediction."""
        return self.prediction_type == "flow_matching"

    @property
    def resolution_factor(self) -> int:
        """Image sides must be multiples of this: the VAE's downsampling times the transformer's patch."""
        return self.vae_scale * self.patch_size

    @property
    def pipeline_class(self) -> str:
        """diffusers' text-to-image pipeline class."""
        return self.pipeline_classes[0]

    @property
    def dreambooth_pipeline_class(self) -> str:
        """hfvision's subclass of ``pipeline_class`` (`hfvision.pipelines`)."""
        return self.pipeline_classes[1]

    @property
    def trainable_text_encoders(self) -> int:
        """How many of the first text encoders ``train_text_encoder`` trains: the CLIP ones, as in diffusers'
        DreamBooth scripts (the T5 encoder of Flux/SD3, the last, stays frozen)."""
        return self.num_text_encoders - 1 if self.flow else self.num_text_encoders

    @property
    def modelspec(self) -> tuple[ModelSpecArchitecture, ...]:
        """The family's ModelSpec architectures, its default first."""
        return tuple(a for a in MODELSPEC_ARCHITECTURES if a.family == self.name)

    @property
    def text_encoders(self) -> tuple[str, ...]:
        """Text-encoder component names, in pipeline order."""
        return _numbered("text_encoder", self.num_text_encoders)

    @property
    def tokenizers(self) -> tuple[str, ...]:
        """Tokenizer component names, in pipeline order."""
        return _numbered("tokenizer", self.num_text_encoders)


def _numbered(name: str, count: int) -> tuple[str, ...]:
    return (name, *(f"{name}_{i}" for i in range(2, count + 1)))


_SD_PIPELINES = ("StableDiffusionPipeline", "DreamBoothPipeline", "StableDiffusionImg2ImgPipeline")
_SDXL_PIPELINES = ("StableDiffusionXLPipeline", "DreamBoothXLPipeline", "StableDiffusionXLImg2ImgPipeline")
_MMDIT = dict(denoiser="transformer", prediction_type="flow_matching", latent_channels=16, patch_size=2)
# SD 1.x and 2.x share the pipeline and UNet layout; 2.x's OpenCLIP encoder is wider, its attention linear.
_SD1_UNET = {"use_linear_projection": False, "addition_embed_type": None}
_SD2_UNET = {"use_linear_projection": True, "addition_embed_type": None}
_SDXL_UNET = {"use_linear_projection": True, "addition_embed_type": "text_time"}  # size/crop + pooled text

# name, title, pipeline classes, text encoders, native resolution, ModelSpec implementation, then for the UNet
# families the real cross-attention width and the telling UNet config values.
# Text encoders: SD 1.x/2.x one CLIP; SDXL two CLIPs; Flux.1 CLIP (pooled) and T5; SD3 two CLIPs and T5.
_TABLE = (
    Family("sd1", "Stable Diffusion 1.x", _SD_PIPELINES, 1, 512, _COMPVIS, 768, _SD1_UNET, safety_checker=True),
    Family("sd2", "Stable Diffusion 2.x", _SD_PIPELINES, 1, 512, _STABILITY, 1024, _SD2_UNET, safety_checker=True),
    Family("sdxl", "Stable Diffusion XL", _SDXL_PIPELINES, 2, 1024, _SGM, 2048, _SDXL_UNET),
    Family("flux", "Flux.1", ("FluxPipeline", "DreamBoothFluxPipeline"), 2, 1024, _FLUX, **_MMDIT),
    Family(
        "sd3", "Stable Diffusion 3", ("StableDiffusion3Pipeline", "DreamBoothSD3Pipeline"), 3, 1024, _SD3, **_MMDIT
    ),
)
FAMILIES: dict[str, Family] = {f.name: f for f in _TABLE}
UNET_FAMILIES = tuple(name for name, f in FAMILIES.items() if not f.flow)
# Families trained with flow matching (a transformer on VAE latents, T5 text encoder).
FLOW_FAMILIES = tuple(name for name, f in FAMILIES.items() if f.flow)
RESOLUTION_FACTORS = {name: f.resolution_factor for name, f in FAMILIES.items()}
_SPEC = ModelSpecArchitecture
# Each family's ModelSpec architectures (its default first); ``modelspec.implementation`` is the family's.
MODELSPEC_ARCHITECTURES = (
    _SPEC("sd1", "sd1", "stable-diffusion-v1", 512, "epsilon"),
    _SPEC("sd2", "sd2", "stable-diffusion-v2-512", 512, "epsilon"),
    _SPEC("sd2-v", "sd2", "stable-diffusion-v2-768-v", 768, "v"),
    _SPEC("sdxl", "sdxl", "stable-diffusion-xl-v1-base", 1024, "epsilon"),
    _SPEC("sd3-medium", "sd3", "stable-diffusion-3-medium", 1024, "flow"),
    _SPEC("sd35-medium", "sd3", "stable-diffusion-3.5-medium", 1024, "flow"),
    _SPEC("sd35-large", "sd3", "stable-diffusion-3.5-large", 1024, "flow"),
    _SPEC("flux-dev", "flux", "flux-1-dev", 1024, "flow"),
    _SPEC("flux-schnell", "flux", "flux-1-schnell", 1024, "flow"),
)


def get_family(name: str) -> Family:
    """The record of family ``name``; anything else raises ``ValueError`` listing the families.

    >>> get_family("sd2").pipeline_class
    'StableDiffusionPipeline'
    """
    if name not in FAMILIES:
        raise ValueError(f"family={name!r} is not one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def families_of_pipeline(class_name: str) -> tuple[str, ...]:
    """The families whose pipelines are called ``class_name`` (SD 1.x and 2.x share theirs); empty if none.

    >>> families_of_pipeline("StableDiffusionPipeline")
    ('sd1', 'sd2')
    """
    return tuple(name for name, f in FAMILIES.items() if class_name in f.pipeline_classes)


def family_from_unet_config(config: Mapping[str, Any]) -> str:
    """``"sdxl"``, ``"sd2"`` or ``"sd1"`` from a UNet config: SDXL's size/text-time conditioning, then SD 2.x's
    linear attention projections (also true of tiny test models, whose widths match no real family).

    >>> family_from_unet_config({"use_linear_projection": True, "cross_attention_dim": 1024})
    'sd2'
    """
    if config.get("addition_embed_type") == FAMILIES["sdxl"].unet_traits["addition_embed_type"]:
        return "sdxl"
    return "sd2" if config.get("use_linear_projection") else "sd1"


__all__ = [
    "FAMILIES",
    "FLOW_FAMILIES",
    "MODELSPEC_ARCHITECTURES",
    "RESOLUTION_FACTORS",
    "UNET_FAMILIES",
    "Family",
    "ModelSpecArchitecture",
    "families_of_pipeline",
    "family_from_unet_config",
    "get_family",
]
