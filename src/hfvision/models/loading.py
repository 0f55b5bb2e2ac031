"""`load_pipeline`: one entry point for every way users point at a model.

Sources, in the order they are recognised:

1. an http(s) URL -> downloaded safely (`download_url`: progress, resume, size cap, optional sha256) and loaded as 2.
2. a local single file (``.safetensors``; ``.ckpt``/``.pt``/``.pth`` only through ``torch.load(weights_only=True)``)
   -> `hfvision.conversion.from_single_file` (family detected from the keys, configs bundled, offline).
3. a local diffusers directory (``model_index.json``).
4. a base-model registry key (``"sd15"``, ``"sdxl"``, ... see `list_base_models`) -> its Hub repo at its revision.
5. a Hub repo id (``"org/name"``).

Pipelines saved by hfvision's DreamBooth pipelines load as those classes (not as remote code). Flux.1 and SD3 /
SD3.5 pipelines (registry keys, and folders or repos of diffusers' `FluxPipeline` / `StableDiffusion3Pipeline`) load
as `DreamBoothFluxPipeline` / `DreamBoothSD3Pipeline`: the same generation, plus ``{token}``/``{class}`` prompts.

>>> from hfvision.models import load_pipeline
>>> pipe = load_pipeline("path/to/diffusers-dir")  # doctest: +SKIP
>>> pipe = load_pipeline("https://example.com/model.safetensors", sha256="...", max_bytes=8 * 1024**3)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger
from .download import DEFAULT_MAX_BYTES, download_url
from .registry import BASE_MODELS, get_base_model, suggest

logger = get_logger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# model_index.json class names written by hfvision pipelines -> module defining them (imported on demand)
HFVISION_PIPELINES = {
    "DreamBoothPipeline": "hfvision.pipelines.dreambooth",
    "DreamBoothXLPipeline": "hfvision.pipelines.dreambooth_xl",
    "DreamBoothFluxPipeline": "hfvision.pipelines.dreambooth_flux",
    "DreamBoothSD3Pipeline": "hfvision.pipelines.dreambooth_sd3",
}
# diffusers pipelines loaded as hfvision's drop-in subclass
SUBCLASSED_PIPELINES = {"FluxPipeline": "DreamBoothFluxPipeline", "StableDiffusion3Pipeline": "DreamBoothSD3Pipeline"}
# a DreamBooth trainer's output keeps diffusers' class name (stock loading) and records its token: load it as the
# DreamBooth class so {token} / {class} work
TRAINED_PIPELINES = {
    "StableDiffusionPipeline": "DreamBoothPipeline",
    "StableDiffusionXLPipeline": "DreamBoothXLPipeline",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def classify_source(source: str | os.PathLike) -> str:
    """What ``source`` is: ``"url"``, ``"file"``, ``"directory"``, ``"registry"`` or ``"hub"``.

    Raises ``FileNotFoundError`` for a path that does not exist and ``ValueError`` for anything else unrecognised
    (with the closest registry key).
    """
    text = str(source)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        if text.startswith(("http://", "https://")):
            return "url"
        raise ValueError(f"unsupported URL scheme in {text!r}; use http(s), a local path, a registry key or a Hub id")
    path = Path(text).expanduser()
    if path.is_dir():
        return "directory"
    if path.is_file():
        return "file"
    if text in BASE_MODELS:
        return "registry"
    looks_like_path = text.startswith((".", "/", "~")) or path.suffix.lower() in SINGLE_FILE_SUFFIXES
    if looks_like_path or text.count("/") > 1:
        raise FileNotFoundError(f"{text} does not exist")
    if _REPO_ID.match(text):
        return "hub"
    raise ValueError(
        f"{text!r} is not a registry key, a local path, a URL or a Hub id (org/name){suggest(text, BASE_MODELS)}"
    )


def hfvision_pipeline_class(name: str):
    """hfvision's pipeline class called ``name`` (a key of ``HFVISION_PIPELINES``), imported on demand."""
    return getattr(importlib.import_module(HFVISION_PIPELINES[name]), name)


def pipeline_class_for(model_index: dict, trust_remote_code: bool = False):
    """The class to load a pipeline with, from its ``model_index.json`` content.

    hfvision's own pipelines, named either plainly or as ``[module, class]`` for one-call remote-code loading, load
    as hfvision's classes (no remote code runs); `FluxPipeline` / `StableDiffusion3Pipeline` as their DreamBooth
    subclasses; a DreamBooth trainer's output (stock SD/SDXL name plus ``instance_token``) as the DreamBooth class; other
    ``[module, class]`` names need ``trust_remote_code=True``.
    """
    from diffusers import DiffusionPipeline

    name = model_index.get("_class_name")
    if isinstance(name, (list, tuple)) and len(name) == 2 and name[1] in HFVISION_PIPELINES:
        if HFVISION_PIPELINES[name[1]].rsplit(".", 1)[1] == name[0]:
            name = name[1]
    if isinstance(name, str):
        name = SUBCLASSED_PIPELINES.get(name, name)
        if "instance_token" in model_index:
            name = TRAINED_PIPELINES.get(name, name)
        if name in HFVISION_PIPELINES:
            return hfvision_pipeline_class(name)
    if isinstance(name, (list, tuple)) and not trust_remote_code:
        raise ValueError(f"this pipeline uses custom code ({name[0]}.py); pass trust_remote_code=True if you trust it")
    return DiffusionPipeline


def load_pipeline(
    source: str | os.PathLike,
    *,
    base: str | None = None,
    revision: str | None = None,
    torch_dtype: Any = None,
    prediction_type: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    sha256: str | None = None,
    headers: dict[str, str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """Load a diffusers pipeline from a registry key, a local directory or single file, a URL or a Hub id.

    Args:
        source (`str` or `os.PathLike`): see the module docstring.
        base (`str`, *optional*): for single files, the registry key whose bundled configs to use (``"sd15"``,
            ``"sd21-base"``, ``"sd21"``, ``"sdxl"``); default: detected from the file.
        revision (`str`, *optional*): Hub revision (registry keys default to the pinned one).
        torch_dtype (`torch.dtype`, *optional*): weights dtype (default float32).
        prediction_type (`str`, *optional*): for single files, ``"epsilon"`` or ``"v_prediction"``.
        max_bytes (`int`, *optional*, defaults to 32 GiB): size cap for URL downloads.
        sha256 (`str`, *optional*): expected sha256 of a URL download (or of a local single file).
        headers (`dict`, *optional*): extra HTTP headers for URL downloads (e.g. an auth token).
        cache_dir (`str` or `os.PathLike`, *optional*): download cache for URLs.
        trust_remote_code (`bool`, *optional*, defaults to `False`): allow pipelines with custom code.
        kwargs: passed to ``from_pretrained`` / ``from_single_file``.

    Returns:
        a `diffusers.DiffusionPipeline` (a `DreamBoothPipeline` for directories/repos saved by one; a
        `DreamBoothFluxPipeline` / `DreamBoothSD3Pipeline` for Flux.1 / SD3 models).

    >>> pipe = load_pipeline("flux-dev", torch_dtype=torch.bfloat16)  # doctest: +SKIP
    >>> type(pipe).__name__  # doctest: +SKIP
    'DreamBoothFluxPipeline'
    """
    kind = classify_source(source)
    logger.info("loading %s (%s)", source, kind)
    if kind == "url":
        path = download_url(str(source), cache_dir=cache_dir, max_bytes=max_bytes, sha256=sha256, headers=headers)
        return _load_single_file(path, base, prediction_type, torch_dtype, None, kwargs)
    if kind == "file":
        return _load_single_file(Path(source), base, prediction_type, torch_dtype, sha256, kwargs)
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    if kind == "directory":
        index_file = Path(source) / "model_index.json"
        if not index_file.is_file():
            raise ValueError(
                f"{source} is not a diffusers pipeline directory (no model_index.json); pass the pipeline's folder "
                "or a single .safetensors file"
            )
        index = json.loads(index_file.read_text(encoding="utf-8"))
        cls = pipeline_class_for(index, trust_remote_code)
        return cls.from_pretrained(str(source), trust_remote_code=trust_remote_code, **kwargs)
    if kind == "registry":
        entry = get_base_model(str(source))
        repo_id, revision = entry.repo_id, revision or entry.revision
        if entry.gated:
            logger.info("%s is gated: accept its licence on the Hub and log in (hf auth login) first", repo_id)
    else:
        repo_id = str(source)
    from huggingface_hub import hf_hub_download

    hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "token", "local_files_only") if k in kwargs}
    index_file = hf_hub_download(repo_id, "model_index.json", revision=revision, **hub_kwargs)
    index = json.loads(Path(index_file).read_text(encoding="utf-8"))
    cls = pipeline_class_for(index, trust_remote_code)
    return cls.from_pretrained(repo_id, revision=revision, trust_remote_code=trust_remote_code, **kwargs)


def _load_single_file(path: Path, base, prediction_type, torch_dtype, sha256, kwargs):
    from .. import conversion

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {SINGLE_FILE_SUFFIXES}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if sha256:
        from ..utils.io import sha256_file

        digest = sha256_file(path)
        if digest != sha256.lower():
            raise ValueError(f"sha256 mismatch for {path}: expected {sha256.lower()}, got {digest}")
    if base is not None:
        get_base_model(base)  # unknown keys get the registry's "did you mean" message
    return conversion.from_single_file(path, base=base, prediction_type=prediction_type, dtype=torch_dtype, **kwargs)
