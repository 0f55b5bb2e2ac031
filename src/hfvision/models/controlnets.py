"""ControlNet registry: per base family, condition name -> Hub checkpoint; compatibility checked before loading.

ControlNets are not interchangeable across families (their residuals must match the UNet's channels and text
embedding size), so `load_controlnet` reads the checkpoint's ``config.json`` first and refuses a mismatch before any
weights are downloaded or read.

>>> from hfvision.models import list_controlnets
>>> list_controlnets("sdxl")
['canny', 'depth', 'openpose', 'union']
>>> cn = load_controlnet("canny", base="sd15")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The compatibility rule lives in the file DreamBooth pipelines ship as remote code (it must stay self-contained);
# this registry applies the same rule.
from ..pipelines.controlnet_utils import controlnet_mismatch
from ..utils.logging import get_logger
from .families import FAMILIES, UNET_FAMILIES, family_from_unet_config
from .registry import get_base_model, suggest

logger = get_logger(__name__)


@dataclass(frozen=True)
class ControlNetEntry:
    """One ControlNet checkpoint: ``name`` within ``family``, Hub ``repo_id``/``revision``, the diffusers model class,
    the preprocessor its condition images come from, and the diffusers pipeline that runs it."""

    name: str
    family: str
    repo_id: str
    model_class: str = "ControlNetModel"
    preprocessor: str = ""
    pipeline_class: str = "StableDiffusionControlNetPipeline"
    revision: str = "main"  # none of these could be pinned offline; pin with HfApi().model_info(repo_id).sha


def _sd15(name: str, repo: str, pre: str) -> ControlNetEntry:
    return ControlNetEntry(name, "sd1", f"lllyasviel/{repo}", preprocessor=pre)


def _sd21(name: str, pre: str) -> ControlNetEntry:
    # Community checkpoints for SD 2.1 (768, v-prediction); same architecture as 2.1-base.
    return ControlNetEntry(name, "sd2", f"thibaud/controlnet-sd21-{name}-diffusers", preprocessor=pre)


_SDXL_PIPE = "StableDiffusionXLControlNetPipeline"
_ENTRIES = (
    _sd15("canny", "control_v11p_sd15_canny", "canny"),
    _sd15("depth", "control_v11f1p_sd15_depth", "depth (MiDaS/DPT)"),
    _sd15("openpose", "control_v11p_sd15_openpose", "openpose"),
    _sd15("scribble", "control_v11p_sd15_scribble", "scribble"),
    _sd15("lineart", "control_v11p_sd15_lineart", "lineart"),
    _sd15("lineart_anime", "control_v11p_sd15s2_lineart_anime", "lineart (anime)"),
    _sd15("softedge", "control_v11p_sd15_softedge", "HED/PiDiNet soft edges"),
    _sd15("seg", "control_v11p_sd15_seg", "ADE20k segmentation"),
    _sd15("normalbae", "control_v11p_sd15_normalbae", "normal map (BAE)"),
    _sd15("mlsd", "control_v11p_sd15_mlsd", "M-LSD lines"),
    _sd15("inpaint", "control_v11p_sd15_inpaint", "masked image"),
    _sd15("ip2p", "control_v11e_sd15_ip2p", "none (instruction pix2pix)"),
    _sd15("shuffle", "control_v11e_sd15_shuffle", "content shuffle"),
    _sd15("tile", "control_v11f1e_sd15_tile", "low-resolution tile"),
    _sd21("canny", "canny"),
    _sd21("depth", "depth (MiDaS/DPT)"),
    _sd21("hed", "HED soft edges"),
    _sd21("openpose", "openpose"),
    _sd21("scribble", "scribble"),
    ControlNetEntry(
        "canny", "sdxl", "diffusers/controlnet-canny-sdxl-1.0", preprocessor="canny", pipeline_class=_SDXL_PIPE
    ),
    ControlNetEntry(
        "depth", "sdxl", "diffusers/controlnet-depth-sdxl-1.0", preprocessor="depth", pipeline_class=_SDXL_PIPE
    ),
    ControlNetEntry(
        "openpose", "sdxl", "thibaud/controlnet-openpose-sdxl-1.0", preprocessor="openpose", pipeline_class=_SDXL_PIPE
    ),
    ControlNetEntry(
        "union",
        "sdxl",
        "xinsir/controlnet-union-sdxl-1.0",
        model_class="ControlNetUnionModel",
        preprocessor="any of 12 control types",
        pipeline_class="StableDiffusionXLControlNetUnionPipeline",
    ),
    ControlNetEntry(
        "canny",
        "flux",
        "InstantX/FLUX.1-dev-controlnet-canny",
        model_class="FluxControlNetModel",
        preprocessor="canny",
        pipeline_class="FluxControlNetPipeline",
    ),
)
CONTROLNETS: dict[str, dict[str, ControlNetEntry]] = {
    f: {e.name: e for e in _ENTRIES if e.family == f} for f in FAMILIES
}

# What a UNet family's ControlNet config must say (the real checkpoints' widths, from the family table).
_FAMILY_TRAITS: dict[str, dict[str, Any]] = {
    name: {
        "cross_attention_dim": FAMILIES[name].cross_attention_dim,
        "addition_embed_type": FAMILIES[name].unet_traits.get("addition_embed_type"),
    }
    for name in UNET_FAMILIES
}


def resolve_family(base: str) -> str:
    """Family of a registry key (``"sd15"`` -> ``"sd1"``) or a family name itself."""
    if base in FAMILIES:
        return base
    return get_base_model(base).family


def controlnet_family(config: Mapping[str, Any]) -> str | None:
    """Family a ControlNet config was built for (``None`` when its sizes match no real family, e.g. tiny tests)."""
    if str(config.get("_class_name", "")).startswith("Flux"):
        return "flux"
    for family, traits in _FAMILY_TRAITS.items():
        if all(config.get(k) == v for k, v in traits.items()):
            return family
    return None


def list_controlnets(base: str) -> list[str]:
    """Names of the registered ControlNets for a base model key (``"sd15"``) or family (``"sd1"``)."""
    return sorted(CONTROLNETS[resolve_family(base)])


def get_controlnet(name: str, base: str) -> ControlNetEntry:
    """Registry entry ``name`` for ``base``; a name registered only for other families is refused with the list."""
    family = resolve_family(base)
    if name in CONTROLNETS[family]:
        return CONTROLNETS[family][name]
    others = [f for f in FAMILIES if name in CONTROLNETS[f]]
    where = f" (it exists for {', '.join(others)}, not {family})" if others else suggest(name, CONTROLNETS[family])
    raise ValueError(
        f"no ControlNet {name!r} for {base!r}{where}; choose from {', '.join(list_controlnets(family))} "
        "or pass a local directory / Hub id"
    )


def _read_config(source: str, revision: str | None, subfolder: str | None, **hub_kwargs: Any) -> dict:
    path = Path(source, subfolder or "")
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} has no config.json; is it a diffusers ControlNet directory?")
    else:
        from huggingface_hub import hf_hub_download

        config_file = hf_hub_download(source, "config.json", subfolder=subfolder, revision=revision, **hub_kwargs)
    with open(config_file, encoding="utf-8") as f:
        return json.load(f)


def check_controlnet_compatibility(controlnet_config: Mapping[str, Any], base: Any) -> None:
    """Raise ``ValueError`` unless a ControlNet with ``controlnet_config`` fits ``base``.

    Args:
        controlnet_config (`Mapping`): the ControlNet's ``config.json`` content.
        base: a registry key / family name (checked against the family's traits), or a UNet, a pipeline with a
            ``unet``, or a UNet config mapping (checked field by field).
    """
    name = controlnet_config.get("_name_or_path", "")
    unet = getattr(base, "unet", base)
    unet_config = getattr(unet, "config", unet)
    if isinstance(unet_config, Mapping):
        reason = controlnet_mismatch(controlnet_config, unet_config)
        if reason:
            raise ValueError(f"ControlNet {name!r} does not fit this base model: {reason}")
        return
    family = resolve_family(base)
    found = controlnet_family(controlnet_config)
    if found != family:
        what = f"is for {found}" if found else "matches no known family"
        raise ValueError(
            f"ControlNet {name!r} {what} (cross_attention_dim={controlnet_config.get('cross_attention_dim')}, "
            f"class {controlnet_config.get('_class_name')}) but base {base!r} is {family}; choose one of "
            f"{', '.join(list_controlnets(family))}"
        )


def load_controlnet(
    name: str | os.PathLike,
    base: Any,
    *,
    revision: str | None = None,
    subfolder: str | None = None,
    torch_dtype=None,
    **kwargs: Any,
):
    """Load a ControlNet for ``base`` after checking, from its config alone, that it fits.

    Args:
        name (`str` or `os.PathLike`): a registered name (``"canny"``, see `list_controlnets`), a local diffusers
            ControlNet directory, or a Hub repo id.
        base: registry key (``"sd15"``), family (``"sd1"``), or a pipeline / UNet / UNet config to match exactly.
        revision (`str`, *optional*): Hub revision (registered entries default to theirs).
        subfolder (`str`, *optional*): folder inside the repo/directory (e.g. ``"controlnet"`` of a saved pipeline).
        torch_dtype (`torch.dtype`, *optional*): weights dtype.
        kwargs: passed to ``from_pretrained`` (``cache_dir``, ``local_files_only``, ``token``, ...).

    >>> controlnet = load_controlnet("canny", base="sd15")  # doctest: +SKIP
    """
    import diffusers

    source, model_class = str(name), None
    is_path = Path(source).exists()
    if not is_path and "/" not in source:
        family = resolve_family(base if isinstance(base, str) else _family_of(base))
        entry = get_controlnet(source, family)
        source, model_class, revision = entry.repo_id, entry.model_class, revision or entry.revision
    hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "token", "local_files_only") if k in kwargs}
    config = _read_config(source, revision, subfolder, **hub_kwargs)
    config.setdefault("_name_or_path", source)
    check_controlnet_compatibility(config, base)
    model_class = model_class or config.get("_class_name") or "ControlNetModel"
    cls = getattr(diffusers, model_class, None)
    if cls is None:
        raise ValueError(f"{source}: model class {model_class!r} is not in diffusers {diffusers.__version__}")
    logger.info("loading ControlNet %s (%s)", source, model_class)
    if not is_path:
        kwargs["revision"] = revision
    return cls.from_pretrained(source, subfolder=subfolder, torch_dtype=torch_dtype, **kwargs)


def _family_of(base: Any) -> str:
    """Family of a pipeline / UNet object (``config.family`` of a DreamBooth pipeline, else from the UNet)."""
    family = getattr(getattr(base, "config", None), "get", lambda k: None)("family")
    if family in FAMILIES:
        return family
    unet_config = getattr(getattr(base, "unet", base), "config", None)
    if unet_config is None:
        raise ValueError(f"cannot tell the base family of {type(base).__name__}; pass a registry key like 'sd15'")
    return family_from_unet_config(unet_config)


__all__ = [
    "CONTROLNETS",
    "ControlNetEntry",
    "check_controlnet_compatibility",
    "controlnet_family",
    "controlnet_mismatch",
    "get_controlnet",
    "list_controlnets",
    "load_controlnet",
]
