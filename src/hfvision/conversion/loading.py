"""Reading single files safely, detecting their family, and loading them with diffusers' ``from_single_file``."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.families import FAMILIES
from ..utils.io import atomic_dir
from ..utils.logging import get_logger
from .configs import (
    BASES,
    DEFAULT_BASE,
    bundled_configs,
    copy_config_dir,
    normalize_prediction_type,
    set_prediction_type,
    write_config_dir,
)
from .keys import FAMILIES as SINGLE_FILE_FAMILIES
from .keys import FAMILY_SENTINELS, UNSUPPORTED_MARKERS
from .single_file import PICKLE_SUFFIXES

logger = get_logger(__name__)

SUPPORTED = ", ".join(f"{name} ({FAMILIES[name].title})" for name in SINGLE_FILE_FAMILIES)


@dataclass
class SingleFileInfo:
    """What a single file holds, read without loading its tensors (safetensors) or code (pickles)."""

    path: Path
    format: str
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)


def _pickle_error(path: Path, err: Exception) -> ValueError:
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    if match is None:  # not a class/function reference: the pickle stream itself is broken
        return ValueError(f"{path} is not a readable PyTorch checkpoint (corrupt pickle data)")
    return ValueError(
        f"{path} is a pickle that needs code to load (it references {match.group(1)}); hfvision only opens .ckpt "
        "files with torch.load(weights_only=True). Use a .safetensors version of the model instead, or convert it "
        "once in an environment you trust."
    )


def read_pickle_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """Load a ``.ckpt``/``.pt`` state dict with ``torch.load(weights_only=True)``; returns ``(state_dict, metadata)``.

    A pickle that needs code (e.g. one holding a PyTorch Lightning callback) is refused with a ``ValueError``.
    """
    import torch

    path = Path(path)
    try:
        mmap = zipfile.is_zipfile(path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise _pickle_error(path, err) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: {err})") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    metadata = checkpoint.get("hfvision_metadata") if isinstance(checkpoint.get("hfvision_metadata"), Mapping) else {}
    while isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    state_dict = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    return state_dict, {str(k): str(v) for k, v in metadata.items()}


def inspect_single_file(path: str | os.PathLike) -> SingleFileInfo:
    """Tensor names/shapes and header metadata of a ``.safetensors`` (header only) or ``.ckpt`` file.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a truncated/corrupt file, an
    unknown suffix or a pickle that needs code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, "pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                metadata = dict(f.metadata() or {})
        except SafetensorError as err:
            raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt: {err})") from None
        return SingleFileInfo(path, "safetensors", shapes, metadata)
    if suffix in PICKLE_SUFFIXES:
        state_dict, metadata = read_pickle_checkpoint(path)
        return SingleFileInfo(path, "ckpt", {k: tuple(v.shape) for k, v in state_dict.items()}, metadata)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; expected .safetensors or .ckpt")


def family_from_keys(keys, name: str = "checkpoint") -> str:
    """Family of an original-layout checkpoint from its sentinel keys; ``ValueError`` naming what was found."""
    keys = set(keys)
    for family, sentinels in FAMILY_SENTINELS.items():
        if all(k in keys for k in sentinels):
            return family
    for fragment, description in UNSUPPORTED_MARKERS:
        example = next((k for k in sorted(keys) if fragment in k), None)
        if example:
            found = f"{description} (e.g. key {example!r})"
            break
    else:
        if any(k.startswith("model.diffusion_model.") for k in keys):
            found = "a UNet without the text encoder keys of a known family"
        else:
            found = f"no Stable Diffusion keys (first keys: {sorted(keys)[:3]})"
    raise ValueError(f"{name}: found {found}; supported single-file families: {SUPPORTED}")


def _prediction_type_from_metadata(metadata: Mapping[str, str]) -> str | None:
    value = metadata.get("hfvision.prediction_type") or metadata.get("modelspec.prediction_type")
    return normalize_prediction_type(value) if value else None


def detect_family(source: str | os.PathLike | Mapping) -> tuple[str, str | None]:
    """Family (``"sd1"``, ``"sd2"``, ``"sdxl"``) of a single file or original-layout state dict, and its
    prediction type when the file's metadata states one (else ``None``).

    >>> detect_family("v1-5-pruned-emaonly.safetensors")
    ('sd1', None)
    """
    if isinstance(source, Mapping):
        return family_from_keys(source.keys(), "state dict"), None
    info = inspect_single_file(source)
    return family_from_keys(info.shapes, str(info.path)), _prediction_type_from_metadata(info.metadata)


def _header_configs(metadata: Mapping[str, str]) -> dict | None:
    raw = metadata.get("hfvision.diffusers_configs")
    return json.loads(raw) if raw else None


def _check_shapes(info: SingleFileInfo, config_dir: Path, source: str) -> None:
    """Fail early, with the fix, when the file's UNet does not fit the chosen config."""
    unet = json.loads((config_dir / "unet" / "config.json").read_text())
    shape = info.shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    expected = (unet["block_out_channels"][0], unet.get("in_channels", 4))
    if shape is not None and tuple(shape[:2]) != expected:
        raise ValueError(
            f"{info.path}: its UNet input layer has shape {list(shape)} but the {source} config expects "
            f"[{expected[0]}, {expected[1]}, ...]; pass config=<a diffusers directory of this model> or the right base"
        )


def _sdxl_text_encoder_2(path: Path, config_dir: Path, dtype):
    """SDXL's second encoder, loaded from ``conditioner.embedders.1`` only.

    diffusers picks the first CLIP it recognises for ``CLIPTextModelWithProjection``, so when both encoders
    have the same width (tiny or custom models) it would load ``embedders.0`` into ``text_encoder_2``.
    """
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm, load_single_file_checkpoint
    from transformers import CLIPTextModelWithProjection

    checkpoint = load_single_file_checkpoint(str(path), local_files_only=True)
    checkpoint = {k: v for k, v in checkpoint.items() if k.startswith("conditioner.embedders.1.")}
    return create_diffusers_clip_model_from_ldm(
        CLIPTextModelWithProjection,
        checkpoint,
        subfolder="text_encoder_2",
        config=str(config_dir),
        torch_dtype=dtype,
        local_files_only=True,
    )


def _check_loaded(pipe, path: Path) -> None:
    import torch

    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
            if empty:
                raise ValueError(f"{path} has no weights for {len(empty)} {name} tensor(s), e.g. {empty[:3]}")


def _prepare_config_dir(
    info: SingleFileInfo, family: str, config_dir: Path, base: str | None, prediction_type: str | None, config
) -> str:
    """Write the diffusers config directory for ``info`` into ``config_dir``; returns where the configs came from."""
    stated = _prediction_type_from_metadata(info.metadata)
    header = _header_configs(info.metadata)
    if config is not None:
        source = f"config={config}"
        copy_config_dir(config, family, config_dir)
    elif header is not None and base is None:
        source = "stored (file header)"
        write_config_dir(header, family, config_dir)
    else:
        if base is None:
            base = "sd21-base" if family == "sd2" and stated == "epsilon" else DEFAULT_BASE[family]
            if family == "sd2" and not (stated or prediction_type):
                logger.warning(
                    "%s states no prediction type; assuming SD 2.x 768 v_prediction (base='sd21'). "
                    "Pass prediction_type='epsilon' or base='sd21-base' for 512 models.",
                    info.path,
                )
        source = f"bundled {base}"
        write_config_dir(bundled_configs(base), family, config_dir)
    # an explicit prediction type wins; a stated one corrects bundled defaults (stored/given configs already agree)
    if prediction_type or (stated and source.startswith("bundled")):
        set_prediction_type(config_dir, prediction_type or stated)
    return source


def from_single_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    base: str | None = None,
    prediction_type: str | None = None,
    config: str | os.PathLike | None = None,
    dtype: Any = None,
    overwrite: bool = False,
    **kwargs,
):
    """Load an original-layout Stable Diffusion file with diffusers' own ``from_single_file``, offline.

    The diffusers config directory diffusers needs comes from, in order: ``config`` (a local diffusers
    directory), the component configs hfvision stored in the file header (exact round trips), or the
    configs bundled for ``base`` (default: the detected family's public base model). Nothing is downloaded.

    Args:
        path (`str` or `os.PathLike`): ``.safetensors`` or ``.ckpt`` (pickles only via ``weights_only=True``).
        out_dir (`str` or `os.PathLike`, *optional*): write a diffusers directory there (atomically) and
            return its path; by default the loaded pipeline is returned.
        base (`str`, *optional*): ``"sd15"``, ``"sd21"`` (768, v), ``"sd21-base"`` (512, epsilon) or ``"sdxl"``:
            use that model's bundled configs. Must match the file's family.
        prediction_type (`str`, *optional*): ``"epsilon"`` or ``"v_prediction"`` (``"v"``); overrides the
            file's metadata and the base's default.
        config (`str` or `os.PathLike`, *optional*): a local diffusers directory whose configs/tokenizers to use.
        dtype (`torch.dtype`, *optional*): dtype of the loaded weights; by default float32, also for float16 files.
        overwrite (`bool`, *optional*, defaults to `False`): replace an existing ``out_dir``.
        kwargs: passed to diffusers' ``from_single_file`` (e.g. components to use as they are).

    Returns:
        a ``StableDiffusionPipeline``/``StableDiffusionXLPipeline``, or the ``out_dir`` `Path`.

    >>> from hfvision.conversion import from_single_file
    >>> pipe = from_single_file("my-model.safetensors")
    >>> from_single_file("v2-1_768-ema-pruned.safetensors", "sd21-diffusers", base="sd21")
    PosixPath('sd21-diffusers')
    """
    path = Path(path)
    info = inspect_single_file(path)
    family = family_from_keys(info.shapes, str(path))
    if base is not None:
        if base not in BASES:
            raise ValueError(f"base={base!r} is not one of {sorted(BASES)}")
        if BASES[base].family != family:
            suggestion = [k for k, b in BASES.items() if b.family == family]
            raise ValueError(
                f"{path} is an {family} checkpoint but base={base!r} is {BASES[base].family}; use one of {suggestion}"
            )
    prediction_type = normalize_prediction_type(prediction_type) if prediction_type else None
    if out_dir is not None and Path(out_dir).exists() and any(Path(out_dir).iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another directory or pass overwrite=True")

    import diffusers

    pipeline_class = getattr(diffusers, FAMILIES[family].pipeline_class)
    with tempfile.TemporaryDirectory(prefix="hfvision-config-") as tmp:
        config_dir = Path(tmp) / "config"
        source = _prepare_config_dir(info, family, config_dir, base, prediction_type, config)
        _check_shapes(info, config_dir, source)
        logger.info("loading %s (%s) with %s configs", path, family, source)
        if family == "sdxl" and "text_encoder_2" not in kwargs:
            widths = [
                json.loads((config_dir / n / "config.json").read_text())["hidden_size"]
                for n in ("text_encoder", "text_encoder_2")
            ]
            if widths[0] == widths[1]:
                kwargs["text_encoder_2"] = _sdxl_text_encoder_2(path, config_dir, dtype)
        pipe = pipeline_class.from_single_file(
            str(path),
            config=str(config_dir),
            local_files_only=True,
            **({"torch_dtype": dtype} if dtype else {}),
            **kwargs,
        )
    _check_loaded(pipe, path)
    if out_dir is None:
        return pipe
    with atomic_dir(out_dir, overwrite=overwrite) as tmp_out:
        pipe.save_pretrained(tmp_out, safe_serialization=True)
    return Path(out_dir)
