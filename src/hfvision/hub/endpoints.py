"""Hugging Face Inference Endpoints: a ``handler.py`` + ``requirements.txt`` in every repo hfvision pushes.

Inference Endpoints serves a repo's ``handler.py`` when it defines ``class EndpointHandler`` with
``__init__(self, path="")`` (``path``: the repo's local copy) and ``__call__(self, data: dict)``, where
``data["inputs"]`` is a ``PIL.Image`` for a binary image request (or the JSON ``inputs`` value) and
``data.get("parameters")`` the options. ``requirements.txt`` is installed first; it pins hfvision, so the handler is
three lines around :class:`hfvision.serving.inference_endpoints.EndpointModel`, which answers exactly like
``hfvision serve`` (same parameter validation, the same task runners, the same one-line error messages).

Kinds of repo (``write_endpoint_files(folder, kind)``):

- ``"classifier"``: an image-classification or gender-classification model repo (face-first with
  ``parameters={"faces": true}``);
- ``"onnx"``: an ``hfvision export`` folder (classifier or text-to-image), run on ONNX Runtime;
- ``"pipeline"``: a diffusers / DreamBooth text-to-image pipeline (``seed`` parameter; returns a ``PIL.Image``);
- ``"lora"``: LoRA weights (``pytorch_lora_weights.safetensors``) on a base model (a registry key or Hub id).

>>> write_endpoint_files("my-classifier", "classifier")  # doctest: +SKIP
['handler.py', 'requirements.txt']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..utils.custom_pipelines import saved_task
from ..utils.io import atomic_write
from ..utils.logging import get_logger

logger = get_logger(__name__)

KINDS = ("classifier", "onnx", "pipeline", "lora")
HANDLER_FILE = "handler.py"
REQUIREMENTS_FILE = "requirements.txt"
_CLASSIFIER_TASKS = ("image-classification", "gender-classification", "image-feature-pyramid")

_HANDLER_TEMPLATE = '''"""Hugging Face Inference Endpoints custom handler, written by hfvision {version}.

It answers like `hfvision serve` (same parameters, validation and errors); hfvision comes from requirements.txt.
Kind: {kind}. Regenerate with `hfvision.hub.endpoints.write_endpoint_files(folder, "{kind}")`.
"""

from hfvision.serving.inference_endpoints import EndpointModel

SETTINGS = {settings}


class EndpointHandler:
    def __init__(self, path=""):
        self.model = EndpointModel(path, **SETTINGS)

    def __call__(self, data):
        return self.model(data)
'''


def _hfvision_version() -> str:
    from .. import __version__

    return __version__


def _classifier_task(folder: Path) -> str:
    """``gender-classification`` for a repo saved with that pipeline (``custom_pipelines``), else
    ``image-classification``."""
    config = folder / "config.json"
    custom = (json.loads(config.read_text(encoding="utf-8")).get("custom_pipelines") or {}) if config.is_file() else {}
    return "gender-classification" if "gender-classification" in map(saved_task, custom) else "image-classification"


def endpoint_settings(
    folder: str | os.PathLike,
    kind: str,
    task: str | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
) -> dict[str, Any]:
    """The ``SETTINGS`` a repo's ``handler.py`` passes to :class:`EndpointModel` (validated, task inferred)."""
    folder = Path(folder)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    if kind == "lora":
        if not base_model:
            raise ValueError('kind="lora" needs base_model= (a registry key like sd15, a Hub id or a folder)')
        if os.path.isdir(base_model):
            raise ValueError(
                f"base_model={base_model!r} is a local folder, which the endpoint cannot see; push it and pass its "
                "Hub id (or a registry key)"
            )
        task = task or "text-to-image"
    elif kind == "pipeline":
        task = task or "text-to-image"
    elif kind == "onnx":
        if task is None:
            raise ValueError('kind="onnx" needs task= (the task in the export\'s export_report.json)')
    else:
        task = task or _classifier_task(folder)
    if kind in ("pipeline", "lora") and task != "text-to-image":
        raise ValueError(f'task={task!r}: kind="{kind}" serves text-to-image')
    if kind == "classifier" and task not in _CLASSIFIER_TASKS:
        raise ValueError(f"task={task!r} is not a classifier task; use one of {', '.join(_CLASSIFIER_TASKS)}")
    settings: dict[str, Any] = {"kind": kind, "task": task}
    if kind == "lora":
        settings.update(base_model=base_model, base_revision=base_revision)
    return settings


def write_endpoint_files(
    folder: str | os.PathLike,
    kind: str,
    *,
    task: str | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
    requirement: str | None = None,
) -> list[str]:
    """Write ``handler.py`` and ``requirements.txt`` into ``folder`` (a repo about to be pushed).

    Args:
        folder (`str` or `os.PathLike`): the saved model, export or pipeline folder.
        kind (`str`): ``"classifier"``, ``"onnx"``, ``"pipeline"`` or ``"lora"`` (see the module docstring).
        task (`str`, *optional*): the served task; default: read from a classifier's config.json
            (``custom_pipelines``), ``text-to-image`` for pipelines and LoRA; required for ONNX exports
            (``push_onnx_to_hub`` passes the one in ``export_report.json``).
        base_model (`str`, *optional*): for ``"lora"``, the base model (registry key or Hub id).
        base_revision (`str`, *optional*): for ``"lora"``, the base model's revision (registry keys default to
            their pinned one).
        requirement (`str`, *optional*): the requirements.txt line installing hfvision (default:
            ``hfvision==<this version>``; e.g. a ``git+https://...@<commit>`` URL for an unreleased build).

    Returns:
        the names of the files written.

    >>> write_endpoint_files("sks-dog-lora", "lora", base_model="sd15")  # doctest: +SKIP
    ['handler.py', 'requirements.txt']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; save the model there first")
    settings = endpoint_settings(folder, kind, task, base_model, base_revision)
    version = _hfvision_version()
    text = _HANDLER_TEMPLATE.format(version=version, kind=kind, settings=repr(settings))
    with atomic_write(folder / HANDLER_FILE, "w") as f:
        f.write(text)
    line = requirement or f"hfvision=={version}"
    with atomic_write(folder / REQUIREMENTS_FILE, "w") as f:
        f.write(f"# installed by Inference Endpoints before handler.py is imported (written by hfvision)\n{line}\n")
    logger.info("wrote %s and %s (%s, %s) into %s", HANDLER_FILE, REQUIREMENTS_FILE, kind, settings["task"], folder)
    return [HANDLER_FILE, REQUIREMENTS_FILE]
