"""Stability AI's ModelSpec header (``modelspec.*`` keys in a safetensors ``__metadata__``), which AUTOMATIC1111,
ComfyUI and kohya's tools read to show a model's architecture, title, trigger phrase and resolution.

Architectures are data, read from the family table (`hfvision.models.families`): id, reference implementation,
default resolution and prediction type.

>>> from hfvision.conversion.modelspec import modelspec_metadata
>>> meta = modelspec_metadata("sdxl", title="dog", trigger_phrase="sks dog", resolution=1024, base_model=None,
...                           lora=True)
>>> meta["modelspec.architecture"], meta["modelspec.resolution"]
('stable-diffusion-xl-v1-base/lora', '1024x1024')
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from ..models.families import FAMILIES, MODELSPEC_ARCHITECTURES
from ..utils.logging import get_logger

logger = get_logger(__name__)

SPEC_VERSION = "1.0.0"
LORA_SUFFIX = "/lora"


@dataclass(frozen=True)
class ModelSpecFamily:
    """One architecture's ModelSpec facts.

    Attributes:
        architecture (`str`): ``modelspec.architecture`` of the full model (``"/lora"`` is appended for adapters).
        implementation (`str`): ``modelspec.implementation``, the code base the original weights belong to.
        resolution (`int`): the native training resolution (square).
        prediction_type (`str`, *optional*): ``modelspec.prediction_type`` (``"epsilon"``, ``"v"``, ``"flow"``).
    """

    architecture: str
    implementation: str
    resolution: int
    prediction_type: str | None = "epsilon"


# Built from the family table (hfvision.models.families): one row per ModelSpec architecture, keyed by the names
# ``family=`` accepts (a family's first architecture is also reachable by the family's own name).
ARCHITECTURES: dict[str, ModelSpecFamily] = {
    a.key: ModelSpecFamily(
        a.architecture, FAMILIES[a.family].modelspec_implementation, a.resolution, a.prediction_type
    )
    for a in MODELSPEC_ARCHITECTURES
}
# other spellings used across hfvision: family names, and base-model registry keys
ALIASES = {
    **{name: f.modelspec[0].key for name, f in FAMILIES.items() if name not in ARCHITECTURES},
    "sd15": "sd1",
    "sd21": "sd2-v",
    "sd21-base": "sd2",
}


def resolve_family(family: str, prediction_type: str | None = None) -> str:
    """The row of [`ARCHITECTURES`] for ``family`` (aliases resolved); ``"sd2"`` with
    ``prediction_type="v_prediction"`` (or ``"v"``) is the 768 v-prediction model."""
    key = ALIASES.get(family, family)
    if key == "sd2" and prediction_type in ("v", "v_prediction"):
        key = "sd2-v"
    if key not in ARCHITECTURES:
        known = ", ".join([*ARCHITECTURES, *ALIASES])
        raise ValueError(f"family={family!r} has no ModelSpec architecture; use one of {known}")
    return key


def format_resolution(resolution: int | tuple[int, int] | list[int] | str) -> str:
    """``512`` -> ``"512x512"``, ``(1024, 768)`` (width, height) -> ``"1024x768"``."""
    if isinstance(resolution, str):
        width, sep, height = resolution.partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise ValueError(f"resolution={resolution!r} must look like WIDTHxHEIGHT, e.g. '512x512'")
        return resolution
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    width, height = (int(v) for v in resolution)
    if width <= 0 or height <= 0:
        raise ValueError(f"resolution={resolution!r} must be positive, e.g. 512 or (1024, 768)")
    return f"{width}x{height}"


def modelspec_metadata(
    family: str,
    *,
    title: str,
    trigger_phrase: str | None,
    resolution: int | tuple[int, int] | None,
    base_model: str | None,
    lora: bool,
    description: str | None = None,
    prediction_type: str | None = None,
    date: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ModelSpec (``modelspec.*``) entries for a safetensors header, all strings.

    Args:
        family (`str`): ``"sd1"``, ``"sd2"``, ``"sd2-v"``, ``"sdxl"`` (or another key of [`ARCHITECTURES`], a family
            name such as ``"flux"``, or a registry key such as ``"sd15"``/``"sd21"``).
        title (`str`): ``modelspec.title``, the name UIs list the model under.
        trigger_phrase (`str`, *optional*): ``modelspec.trigger_phrase`` (e.g. ``"sks dog"``); omitted when `None`.
        resolution (`int` or `(width, height)`, *optional*): the training resolution; the family's native one
            when `None`.
        base_model (`str`, *optional*): what the model was trained from (a Hub id or path), recorded as
            ``hfvision.base_model``; ModelSpec has no key for it.
        lora (`bool`): the file is an adapter (``"/lora"`` is appended to the architecture).
        description (`str`, *optional*): ``modelspec.description``.
        prediction_type (`str`, *optional*): ``"epsilon"`` or ``"v_prediction"``/``"v"``; ``"sd2"`` with v-prediction
            is recorded as the 768-v architecture.
        date (`str`, *optional*): ``modelspec.date``; today (ISO 8601) when `None`.
        extra (`Mapping[str, str]`, *optional*): more entries, written last (they may override).

    Returns:
        `dict[str, str]`: header entries ready for ``safetensors.torch.save_file(..., metadata=...)``.
    """
    spec = ARCHITECTURES[resolve_family(family, prediction_type)]
    if not title:
        raise ValueError("title must be a non-empty string (modelspec.title), e.g. the output folder name")
    if prediction_type in ("v", "v_prediction"):
        prediction = "v"
    elif prediction_type in (None, ""):
        prediction = spec.prediction_type
    else:
        prediction = prediction_type
    header = {
        "modelspec.sai_model_spec": SPEC_VERSION,
        "modelspec.architecture": spec.architecture + (LORA_SUFFIX if lora else ""),
        "modelspec.implementation": spec.implementation,
        "modelspec.title": title,
        "modelspec.resolution": format_resolution(spec.resolution if resolution is None else resolution),
        "modelspec.date": date or datetime.date.today().isoformat(),
    }
    if prediction:
        header["modelspec.prediction_type"] = prediction
    if trigger_phrase:
        header["modelspec.trigger_phrase"] = trigger_phrase
    if description:
        header["modelspec.description"] = description
    if base_model:
        header["hfvision.base_model"] = str(base_model)
    for key, value in (extra or {}).items():
        header[str(key)] = value if isinstance(value, str) else str(value)
    return header


def family_from_architecture(architecture: str) -> str | None:
    """The [`ARCHITECTURES`] key whose architecture ``architecture`` names (with or without ``"/lora"``), else
    `None`."""
    base = architecture.removesuffix(LORA_SUFFIX)
    return next((key for key, spec in ARCHITECTURES.items() if spec.architecture == base), None)


# cross-attention width of the UNet (attn2.to_k input features) -> family, for families with one architecture: SD 2.x
# (1024) is left to the user, since the 512 base and the 768 v-prediction models share it
_CROSS_ATTENTION_FAMILIES = {
    f.cross_attention_dim: name for name, f in FAMILIES.items() if f.cross_attention_dim and len(f.modelspec) == 1
}


def guess_family(state_dict: Mapping) -> str | None:
    """``"sd1"``/``"sdxl"`` from the shape of a cross-attention key projection's LoRA down weight (diffusers, PEFT or
    kohya names); ``"flux-dev"`` for a Flux LoRA that adapts the guidance embedder (only dev has one; other Flux LoRAs
    fit dev and schnell alike); else `None`."""
    if any("guidance_embedder" in key or key.startswith("lora_unet_guidance_in") for key in state_dict):
        return "flux-dev"
    for key, value in state_dict.items():
        down = key.endswith(("lora.down.weight", "lora_A.weight", "lora_down.weight"))
        if ("attn2.to_k" in key or "attn2_to_k" in key) and down:
            return _CROSS_ATTENTION_FAMILIES.get(value.shape[-1])
    return None


def lora_modelspec(
    header: Mapping[str, str],
    state_dict: Mapping,
    *,
    family: str | None = None,
    title: str | None = None,
    trigger_phrase: str | None = None,
    resolution: int | str | None = None,
    base_model: str | None = None,
    description: str | None = None,
) -> dict[str, str]:
    """The ModelSpec entries for a converted LoRA: the input's own, completed from the family (given, named by
    ``modelspec.architecture``, or guessed from the weights) and overridden by the values passed. Empty when the
    family is unknown and the input has none."""
    carried = {k: v for k, v in header.items() if k.startswith("modelspec.")}
    known = family or family_from_architecture(carried.get("modelspec.architecture", "")) or guess_family(state_dict)
    if known is None:
        if not carried:
            logger.warning(
                "no ModelSpec metadata written: the family is unknown; pass --family (e.g. sd1, sdxl, flux-dev)"
            )
        spec = dict(carried)
    else:
        defaults = modelspec_metadata(
            known, title=title or "lora", trigger_phrase=None, resolution=None, base_model=None, lora=True
        )
        spec = {**defaults, **carried}
        if family:  # an explicit family decides the architecture
            spec.update({k: defaults[k] for k in ("modelspec.architecture", "modelspec.implementation")})
    explicit = {
        "modelspec.title": title,
        "modelspec.trigger_phrase": trigger_phrase,
        "modelspec.description": description,
        "hfvision.base_model": base_model,
    }
    if resolution is not None:
        explicit["modelspec.resolution"] = format_resolution(
            int(resolution) if str(resolution).isdigit() else resolution
        )
    spec.update({k: v for k, v in explicit.items() if v})
    return spec
