"""Base-model registry: the Stable Diffusion / SD3.5 / Flux checkpoints hfvision knows, as data, with a small lookup API.

Used by the trainer (resolution checks), the UI (model menu) and `load_pipeline` (registry keys).

>>> from hfvision.models import get_base_model, list_base_models, validate_training_resolution
>>> list_base_models()
['flux-dev', 'flux-schnell', 'sd15', 'sd21', 'sd21-base', 'sd35-large', 'sd35-medium', 'sdxl']
>>> get_base_model("sd21").prediction_type
'v_prediction'
>>> validate_training_resolution("sd15", 512)
512
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..utils.logging import get_logger
from .families import FAMILIES, FLOW_FAMILIES, RESOLUTION_FACTORS, Family, get_family

logger = get_logger(__name__)

__all__ = [  # the family constants are re-exported: flow_matching and older callers import them from here
    "BASE_MODELS",
    "FAMILIES",
    "FLOW_FAMILIES",
    "RESOLUTION_FACTORS",
    "BaseModel",
    "get_base_model",
    "list_base_models",
    "suggest",
    "validate_training_resolution",
]


@dataclass(frozen=True)
class BaseModel:
    """One base checkpoint; what its family shares is in its [`~hfvision.models.families.Family`] record.

    Attributes:
        key (`str`): registry key, e.g. ``"sd15"``.
        repo_id (`str`): Hub repository (diffusers layout).
        revision (`str`): commit to load (``"main"`` where no pin is known; see ``revision_note``).
        family (`str`): architecture family: ``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"`` or ``"sd3"``.
        resolution (`int`): native (training) resolution in pixels.
        training_resolutions (`tuple[int, ...]`): resolutions DreamBooth training accepts without an override.
        license (`str`): licence identifier as on the model card.
        description (`str`): one line for menus.
        prediction_type (`str`, *optional*): ``"epsilon"``, ``"v_prediction"`` or ``"flow_matching"``; the family's
            when not given.
        gated (`bool`): the Hub requires accepting the licence before download.
        max_sequence_length (`int`, *optional*): longest T5 prompt the model takes (flow families).
        guidance_embeds (`bool`, *optional*): the transformer takes a guidance-scale embedding (Flux.1-dev, distilled);
            `False` for the other flow models when not given.
    """

    key: str
    repo_id: str
    revision: str
    family: str
    resolution: int
    training_resolutions: tuple[int, ...]
    license: str
    description: str
    prediction_type: str | None = None
    gated: bool = False
    max_sequence_length: int | None = None
    guidance_embeds: bool | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"{self.key}: family={self.family!r} is not one of {tuple(FAMILIES)}")
        if self.prediction_type is None:
            object.__setattr__(self, "prediction_type", self.family_spec.prediction_type)
        if self.family_spec.flow and self.guidance_embeds is None:
            object.__setattr__(self, "guidance_embeds", False)
        if self.resolution not in self.training_resolutions:
            raise ValueError(f"{self.key}: native resolution {self.resolution} missing from training_resolutions")
        factor = self.family_spec.resolution_factor
        if any(r % factor for r in self.training_resolutions):
            raise ValueError(f"{self.key}: training_resolutions must be multiples of {factor} for {self.family}")
        if self.family_spec.flow != (self.max_sequence_length is not None):
            raise ValueError(f"{self.key}: max_sequence_length is required for flow families, and only for them")

    @property
    def family_spec(self) -> Family:
        """The family's record (pipeline class, components, resolution factor, ...)."""
        return get_family(self.family)

    @property
    def pipeline_class(self) -> str:
        """The class `load_pipeline` returns: diffusers' for the UNet families, hfvision's DreamBooth subclass of
        diffusers' for Flux.1 and SD3 (see ``hfvision.models.loading.SUBCLASSED_PIPELINES``)."""
        spec = self.family_spec
        return spec.dreambooth_pipeline_class if spec.flow else spec.pipeline_class

    @property
    def revision_note(self) -> str:
        """Where the pinned revision comes from."""
        return _UNPINNED if self.revision == "main" else _THIRD_PARTY_PIN


# Revisions: this machine cannot reach the Hub, so nothing here was checked against it. The commit SHAs below were
# taken from public pin tables of other projects (cited as "third-party pin"); "main" is used where no pin was found.
# Before relying on reproducibility, confirm or replace each with HfApi().model_info(repo_id).sha when online.
_THIRD_PARTY_PIN = "commit from a third-party pin table, not verified against the Hub from here"
_UNPINNED = "no verified commit available offline; tracks main until pinned with HfApi().model_info(repo_id).sha"
_SD_512 = (384, 448, 512, 576)
_FLOW_1024 = (512, 768, 1024)


def _sd35(size: str, description: str) -> BaseModel:
    # SD3.5 Medium and Large differ only in size; 512 T5 tokens is the bound diffusers' StableDiffusion3Pipeline
    # enforces (its default is 256).
    return BaseModel(
        f"sd35-{size.lower()}",
        f"stabilityai/stable-diffusion-3.5-{size.lower()}",
        "main",
        "sd3",
        1024,
        _FLOW_1024,
        "stabilityai-ai-community",
        f"Stable Diffusion 3.5 {size} (1024 px, {description}, three text encoders; gated)",
        gated=True,
        max_sequence_length=512,
    )


_BASE_MODELS = (
    BaseModel(
        key="sd15",
        repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
        family="sd1",
        resolution=512,
        training_resolutions=_SD_512,
        license="creativeml-openrail-m",
        description="Stable Diffusion 1.5 (512 px), the most widely fine-tuned base",
    ),
    BaseModel(
        key="sd21-base",
        repo_id="stabilityai/stable-diffusion-2-1-base",
        revision="main",
        family="sd2",
        resolution=512,
        training_resolutions=_SD_512,
        license="openrail++",
        description="Stable Diffusion 2.1 base (512 px, epsilon prediction)",
    ),
    BaseModel(
        key="sd21",
        repo_id="stabilityai/stable-diffusion-2-1",
        revision="main",
        family="sd2",
        resolution=768,
        training_resolutions=(640, 704, 768, 832),
        license="openrail++",
        description="Stable Diffusion 2.1 (768 px, v-prediction)",
        prediction_type="v_prediction",
    ),
    BaseModel(
        key="sdxl",
        repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        revision="462165984030d82259a11f4367a4eed129e94a7b",
        family="sdxl",
        resolution=1024,
        training_resolutions=(768, 832, 896, 960, 1024),
        license="openrail++",
        description="Stable Diffusion XL base 1.0 (1024 px, two text encoders)",
    ),
    BaseModel(
        key="flux-schnell",
        repo_id="black-forest-labs/FLUX.1-schnell",
        revision="741f7c3ce8b383c54771c7003378a50191e9efe9",
        family="flux",
        resolution=1024,
        training_resolutions=_FLOW_1024,
        license="apache-2.0",
        description="FLUX.1 [schnell] (1024 px, 1-4 steps; needs a large GPU)",
        max_sequence_length=256,  # timestep-distilled with 256 T5 tokens (diffusers' FluxPipeline docs)
    ),
    BaseModel(
        key="flux-dev",
        repo_id="black-forest-labs/FLUX.1-dev",
        revision="3de623fc3c33e44ffbe2bad470d0f45bccf2eb21",
        family="flux",
        resolution=1024,
        training_resolutions=_FLOW_1024,
        license="flux-1-dev-non-commercial-license",
        description="FLUX.1 [dev] (1024 px, guidance-distilled; non-commercial licence, gated)",
        gated=True,
        max_sequence_length=512,
        guidance_embeds=True,
    ),
    _sd35("Medium", "2.5B MMDiT-X"),
    _sd35("Large", "8.1B MMDiT"),
)
BASE_MODELS: dict[str, BaseModel] = {m.key: m for m in _BASE_MODELS}


def list_base_models(family: str | None = None) -> list[str]:
    """Registry keys, sorted; only those of ``family`` (``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"``, ``"sd3"``) if
    given."""
    if family is not None:
        get_family(family)  # unknown families raise, naming the known ones
    return sorted(k for k, m in BASE_MODELS.items() if family is None or m.family == family)


def suggest(name: str, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def get_base_model(key: str) -> BaseModel:
    """The registry entry for ``key``; an unknown key raises ``ValueError`` naming the closest one.

    >>> get_base_model("sdxl").resolution
    1024
    """
    if isinstance(key, BaseModel):
        return key
    if key in BASE_MODELS:
        return BASE_MODELS[key]
    raise ValueError(f"unknown base model {key!r}{suggest(key, BASE_MODELS)} Known: {', '.join(list_base_models())}")


def validate_training_resolution(key: str, resolution: int, allow_override: bool = False) -> int:
    """Check ``resolution`` for DreamBooth training on base model ``key``; returns it.

    A resolution outside the entry's ``training_resolutions`` raises ``ValueError`` naming the native resolution and
    the registry entry trained at the requested size, unless ``allow_override=True`` (then it only warns). Sizes
    that are not positive multiples of the family's factor (8; 16 for Flux and SD3, see ``RESOLUTION_FACTORS``) are
    always refused.

    >>> validate_training_resolution("sd15", 768)
    Traceback (most recent call last):
    ...
    ValueError: resolution=768 is not a supported training resolution for 'sd15' (sd1, native 512 px) ...
    """
    model = get_base_model(key)
    factor = model.family_spec.resolution_factor
    if not isinstance(resolution, int) or resolution <= 0 or resolution % factor:
        fine = isinstance(resolution, (int, float)) and resolution > 0
        low = max(factor, int(resolution) // factor * factor) if fine else model.resolution
        why = f" for {model.family} (VAE 8 x patch 2)" if factor != 8 else ""
        raise ValueError(
            f"resolution={resolution!r} must be a positive multiple of {factor}{why}; try {low} or {low + factor}"
        )
    if resolution in model.training_resolutions:
        return resolution
    native = [m.key for m in _BASE_MODELS if m.resolution == resolution and m.key != model.key]
    hint = f"use {model.resolution} (allowed: {', '.join(map(str, model.training_resolutions))})"
    if native:
        hint += f", or base model {native[0]!r}, which is native {resolution} px"
    message = (
        f"resolution={resolution} is not a supported training resolution for {model.key!r} "
        f"({model.family}, native {model.resolution} px); {hint}"
    )
    if allow_override:
        logger.warning("%s (continuing: allow_override=True)", message)
        return resolution
    raise ValueError(message + "; or pass allow_override=True")
