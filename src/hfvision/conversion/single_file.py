"""diffusers pipeline -> one original-layout Stable Diffusion file (for AUTOMATIC1111, ComfyUI, ...)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils.io import atomic_path
from ..utils.logging import get_logger
from .configs import MODEL_COMPONENTS, TOKENIZERS, normalize_prediction_type, tokenizer_entry
from .keys import LAYOUTS
from .mapping import pipeline_to_original
from .modelspec import modelspec_metadata

logger = get_logger(__name__)

FORMAT_VERSION = "1"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
_INDEX_FILES = ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
_PICKLE_FILES = ("diffusion_pytorch_model.bin", "pytorch_model.bin")
# user metadata key -> header keys it is written to
_KNOWN_METADATA = {
    "base_model": ("hfvision.base_model",),
    "trigger_word": ("hfvision.trigger_word", "modelspec.trigger_phrase"),
    "title": ("modelspec.title",),
    "description": ("modelspec.description",),
    "author": ("modelspec.author",),
    "license": ("modelspec.license",),
}


def load_component_weights(directory: str | os.PathLike) -> dict:
    """State dict of a saved diffusers/transformers component (single or sharded safetensors; .bin only
    through ``torch.load(weights_only=True)``)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return load_file(directory / name)
    for name in _INDEX_FILES:
        if (directory / name).is_file():
            shards = sorted(set(json.loads((directory / name).read_text())["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(load_file(directory / shard))
            return state_dict
    for name in _PICKLE_FILES:
        if (directory / name).is_file():
            import torch

            return torch.load(directory / name, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory} has no weights (looked for {', '.join(_WEIGHT_FILES + _INDEX_FILES)})")


def infer_family(configs: Mapping[str, Mapping]) -> str:
    """The family a pipeline records (DreamBoothPipeline's ``family``), else ``"sdxl"`` with two text encoders,
    ``"sd2"`` for an OpenCLIP-style (GELU) encoder, else ``"sd1"``."""
    recorded = configs.get("model_index", {}).get("family")
    if recorded in LAYOUTS:
        return recorded
    if "text_encoder_2" in configs:
        return "sdxl"
    return "sd2" if configs["text_encoder"].get("hidden_act") == "gelu" else "sd1"


def _read_pipeline_dir(directory: Path) -> tuple[dict, dict]:
    if not (directory / "model_index.json").is_file():
        raise FileNotFoundError(f"{directory} is not a diffusers pipeline directory (no model_index.json)")
    configs: dict[str, Any] = {"model_index": json.loads((directory / "model_index.json").read_text())}
    state_dicts = {}
    for name in MODEL_COMPONENTS:
        if (directory / name / "config.json").is_file():
            configs[name] = json.loads((directory / name / "config.json").read_text())
            state_dicts[name] = load_component_weights(directory / name)
    configs["scheduler"] = json.loads((directory / "scheduler" / "scheduler_config.json").read_text())
    for name in TOKENIZERS:
        if (directory / name / "tokenizer_config.json").is_file():
            configs[name] = tokenizer_entry(directory / name)
    return configs, state_dicts


def _read_pipeline_object(pipe) -> tuple[dict, dict]:
    configs: dict[str, Any] = {"model_index": {k: v for k, v in dict(pipe.config).items() if not k.startswith("_")}}
    configs["model_index"]["_class_name"] = type(pipe).__name__
    state_dicts = {}
    for name in MODEL_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is not None:
            config = module.config
            configs[name] = config.to_dict() if hasattr(config, "to_dict") else dict(config)
            state_dicts[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    configs["scheduler"] = {**dict(pipe.scheduler.config), "_class_name": type(pipe.scheduler).__name__}
    for name in TOKENIZERS:
        tokenizer = getattr(pipe, name, None)
        if tokenizer is not None:
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer.save_pretrained(tmp)
                configs[name] = tokenizer_entry(tmp)
    return configs, state_dicts


def _json_safe(configs: dict) -> dict:
    """Config dicts as JSON (tuples -> lists, non-JSON values -> str), dropping bookkeeping fields."""
    drop = {"_name_or_path", "_commit_hash", "_use_default_values", "transformers_version", "_diffusers_version"}
    cleaned = {}
    for name, value in configs.items():
        if isinstance(value, Mapping) and name != "model_index":
            value = {k: v for k, v in value.items() if k not in drop}
        cleaned[name] = value
    return json.loads(json.dumps(cleaned, default=str))


def build_metadata(family: str, configs: dict, metadata: Mapping[str, Any] | None, dtype: str) -> dict[str, str]:
    """The safetensors header: ``hfvision.*`` (family, prediction type, component configs for exact
    offline round trips) and Stability's ModelSpec keys that UIs display (``modelspec.*``)."""
    prediction_type = normalize_prediction_type(configs["scheduler"].get("prediction_type", "epsilon"))
    unet, vae = configs["unet"], configs["vae"]
    resolution = int(unet.get("sample_size") or 64) * 2 ** (len(vae["block_out_channels"]) - 1)
    header = {
        "hfvision.format_version": FORMAT_VERSION,
        "hfvision.family": family,
        "hfvision.prediction_type": prediction_type,
        "hfvision.dtype": dtype,
        "hfvision.diffusers_configs": json.dumps(_json_safe(configs), sort_keys=True),
        # architecture (SD 2.x: 512 base or 768-v by prediction type), implementation, resolution, date, ...
        **modelspec_metadata(
            family,
            title=str((metadata or {}).get("title") or "model"),
            trigger_phrase=None,
            resolution=resolution,
            base_model=None,
            lora=False,
            prediction_type=prediction_type,
        ),
    }
    index = configs.get("model_index", {})
    user = {"trigger_word": index.get("instance_token"), "class_noun": index.get("class_noun")}
    user = {k: v for k, v in user.items() if v}
    user.update(metadata or {})
    for key, value in user.items():
        text = value if isinstance(value, str) else json.dumps(value)
        targets = _KNOWN_METADATA.get(key) or ((key if "." in key else f"hfvision.{key}"),)
        for target in targets:
            header[target] = text
    return header


def to_single_file(
    pipeline: str | os.PathLike | Any,
    out_path: str | os.PathLike,
    half: bool = False,
    format: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    family: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a diffusers Stable Diffusion pipeline as one file in the original (CompVis/Stability) layout.

    The UNet goes to ``model.diffusion_model.*``, the VAE to ``first_stage_model.*`` and the text
    encoder(s) to ``cond_stage_model.transformer.text_model.*`` (SD 1.x), ``cond_stage_model.model.*``
    (SD 2.x, OpenCLIP names) or ``conditioner.embedders.{0,1}.*`` (SDXL). Key names are generated from
    the components' configs, so non-standard shapes (levels, layers per block, transformer depth) convert.
    Every weight is written under its original name or the call fails; nothing is dropped silently.

    Note: SD 2.x text encoders in diffusers have 23 of OpenCLIP's 24 layers (SD 2 conditions on the
    penultimate layer) and no ``text_projection``, so the file has ``resblocks.0-22`` only, as diffusers'
    own conversion script writes it; loaders that build the full OpenCLIP tower leave the unused last
    layer at its initial values.

    Args:
        pipeline (`str`, `os.PathLike` or `DiffusionPipeline`): a diffusers pipeline directory or object.
        out_path (`str` or `os.PathLike`): file to write (atomically).
        half (`bool`, *optional*, defaults to `False`): store floating-point weights as float16.
        format (`str`, *optional*): ``"safetensors"`` (default) or ``"ckpt"``. ``"ckpt"`` is a pickle made with
            ``torch.save({"state_dict": ...})`` for legacy tools only; safetensors needs no code to load.
            Inferred from the suffix of ``out_path`` when not given.
        metadata (`Mapping`, *optional*): header entries. ``base_model``, ``trigger_word``, ``title`` (default:
            ``out_path``'s stem), ``description``, ``author``, ``license`` are mapped to ``hfvision.*``/``modelspec.*``
            keys; other keys are written as given (non-strings as JSON). A ``.ckpt`` keeps them under
            ``"hfvision_metadata"``.
        family (`str`, *optional*): ``"sd1"``, ``"sd2"`` or ``"sdxl"``; inferred from the text encoders if omitted.
        overwrite (`bool`, *optional*, defaults to `False`): replace an existing ``out_path``.

    Returns:
        `Path`: ``out_path``.

    >>> from hfvision.conversion import to_single_file
    >>> to_single_file("my-dreambooth-model", "my-model.safetensors", half=True, metadata={"trigger_word": "sks"})
    PosixPath('my-model.safetensors')
    """
    import torch

    out_path = Path(out_path)
    suffix_format = "ckpt" if out_path.suffix.lower() in PICKLE_SUFFIXES else "safetensors"
    format = format or suffix_format
    if format not in ("safetensors", "ckpt"):
        raise ValueError(f"format={format!r} must be 'safetensors' or 'ckpt'")
    if format != suffix_format:
        raise ValueError(f"format={format!r} does not match the file name {out_path.name}; use a .{format} suffix")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; choose another name or pass overwrite=True")

    if isinstance(pipeline, (str, os.PathLike)):
        configs, state_dicts = _read_pipeline_dir(Path(pipeline))
    else:
        configs, state_dicts = _read_pipeline_object(pipeline)
    skipped = sorted(
        name
        for name, value in configs["model_index"].items()
        if isinstance(value, (list, tuple))
        and value
        and value[0] is not None
        and name not in (*MODEL_COMPONENTS, *TOKENIZERS, "scheduler")
    )
    if skipped:
        logger.warning("%s are not part of the original single-file layout and are not written", ", ".join(skipped))
    family = family or infer_family(configs)
    if family not in LAYOUTS:
        raise ValueError(f"family={family!r} is not one of {tuple(LAYOUTS)}")
    state_dict = pipeline_to_original(family, state_dicts, configs)
    if half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    # the title UIs show defaults to the file's own name, as for converted LoRAs
    metadata = {"title": out_path.stem, **(metadata or {})}
    header = build_metadata(family, configs, metadata, "float16" if half else "float32")

    with atomic_path(out_path) as tmp:
        if format == "safetensors":
            from safetensors.torch import save_file

            save_file(state_dict, tmp, metadata=header)
        else:
            torch.save({"state_dict": state_dict, "hfvision_metadata": header}, tmp)
    size_mb = out_path.stat().st_size / 1e6
    logger.info("wrote %s (%s, %d tensors, %.1f MB)", out_path, family, len(state_dict), size_mb)
    return out_path
