"""Hugging Face Inference Endpoints: a ``handler.py`` + ``requirements.txt`` in every repo hfvision pushes.

Inference Endpoints serves a repo's ``handler.py`` when it defines ``class EndpointHandler`` with
``__init__(self, path="")`` (``path``: the repo's local copy) and ``__call__(self, data: dict)``, where
``data["inputs"]`` is a ``PIL.Image`` for a binary image request (or the JSON ``inputs`` value) and
``data.get("parameters")`` the options. ``requirements.txt`` is installed first; it pins hfvision, so the handler is
three lines around :class:`EndpointModel`, which answers exactly like ``hfvision serve`` (same parameter
validation, the same task runners, the same one-line error messages).

Kinds of repo (``write_endpoint_files(folder, kind)``):

- ``"classifier"``: an image-classification or gender-classification model repo (face-first with
  ``parameters={"faces": true}``);
- ``"onnx"``: an ``hfvision export`` folder (classifier or text-to-image), run on ONNX Runtime;
- ``"pipeline"``: a diffusers / DreamBooth text-to-image pipeline (``seed`` parameter; returns a ``PIL.Image``);
- ``"lora"``: LoRA weights (``pytorch_lora_weights.safetensors``) on a base model (registry key, Hub id or folder).

>>> write_endpoint_files("my-classifier", "classifier")  # doctest: +SKIP
['handler.py', 'requirements.txt']
>>> handler = EndpointModel("my-classifier", kind="classifier", task="gender-classification")  # doctest: +SKIP
>>> handler({"inputs": Image.open("photo.jpg"), "parameters": {"top_k": 1}})  # doctest: +SKIP
[{'label': 'female', 'score': 0.93}]
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

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

from hfvision.hub.endpoints import EndpointModel

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
    if config.is_file():
        custom = json.loads(config.read_text(encoding="utf-8")).get("custom_pipelines") or {}
        if "gender-classification" in custom:
            return "gender-classification"
    return "image-classification"


def _export_task(folder: Path) -> str:
    from ..export.export import REPORT_FILE
    from ..export.runtime import _export_task as read_export_task

    task = read_export_task(folder)
    if task is None:
        raise ValueError(f"{folder} has no readable {REPORT_FILE}: pass task= (the task the ONNX export was made for)")
    return task


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
        task = task or _export_task(folder)
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
        task (`str`, *optional*): the served task; default: read from the folder (``custom_pipelines`` of a
            classifier, ``export_report.json`` of an ONNX export; ``text-to-image`` for pipelines and LoRA).
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


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EndpointModel:
    """What a repo's ``EndpointHandler`` runs: loads the repo like ``hfvision serve`` would, answers a request dict.

    Args:
        path (`str`): the repo's local folder (Inference Endpoints passes it to ``EndpointHandler``).
        kind (`str`): see :data:`KINDS`.
        task (`str`): the served task (``image-classification``, ``gender-classification``,
            ``image-feature-pyramid`` or ``text-to-image``).
        base_model (`str`, *optional*): LoRA repos: the base model to load the weights into.
        base_revision (`str`, *optional*): LoRA repos: the base model's revision.
        device (`str`, *optional*): torch device (default: ``cuda`` when available, else ``cpu``).

    Calling it with ``{"inputs": ..., "parameters": {...}}`` returns ``[{"label", "score"}, ...]`` for classifiers
    (a list per face with ``"faces": true``) and a ``PIL.Image`` for text-to-image. A bad request raises
    ``ValueError`` with ``hfvision serve``'s one-line message (the endpoint answers it as a 400).
    """

    def __init__(
        self,
        path: str = "",
        kind: str = "classifier",
        task: str = "image-classification",
        base_model: str | None = None,
        base_revision: str | None = None,
        device: str | None = None,
    ):
        from ..serving.config import ServeConfig
        from ..serving.tasks import load_runner, make_runner

        path = path or "."
        self.kind, self.task = kind, task
        config = ServeConfig(task=task, model=str(path), onnx=kind == "onnx", device=device or _default_device())
        if kind == "lora":
            from ..models import load_pipeline

            pipe = load_pipeline(base_model, revision=base_revision)
            pipe.load_lora_weights(str(path))
            self.runner = make_runner(config, pipe.to(config.device))
        else:
            self.runner = load_runner(config)
        logger.info("endpoint ready: %s (%s) from %s", task, kind, path)

    def _request(self, inputs: Any, parameters: Any) -> tuple[bytes, str]:
        """The request as ``hfvision serve`` would receive it: (body, content type)."""
        if self.task == "text-to-image":
            return json.dumps({"inputs": inputs, "parameters": parameters}).encode(), "application/json"
        if isinstance(inputs, (bytes, bytearray)):
            data = bytes(inputs)
        elif hasattr(inputs, "save") and hasattr(inputs, "mode"):  # a PIL image: the toolkit decoded the upload
            from PIL import ImageOps

            buffer = io.BytesIO()  # lossless, so the pixels are the upload's; EXIF rotation applied like serve does
            ImageOps.exif_transpose(inputs).save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
        else:  # a JSON value (base64 image): validated by the wire parser
            return json.dumps({"inputs": inputs, "parameters": parameters}).encode(), "application/json"
        if parameters is None:
            return data, "application/octet-stream"
        payload = {"inputs": base64.b64encode(data).decode("ascii"), "parameters": parameters}
        return json.dumps(payload).encode(), "application/json"

    def __call__(self, data: dict) -> Any:
        """Answer one request ``{"inputs": ..., "parameters": ...}`` (Inference Endpoints' handler contract)."""
        from ..serving.wire import WireError

        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request must be {"inputs": ..., "parameters": {...}}')
        body, content_type = self._request(data["inputs"], data.get("parameters"))
        try:
            payload, key = self.runner.prepare(body, content_type)
            result = self.runner.run_batch(key, [payload])[0]
        except WireError as err:
            raise ValueError(err.message) from None
        if self.task == "text-to-image":
            image, _seed = result
            return image
        body, _, _ = self.runner.encode(result)  # the JSON serve sends (arrays as lists, numpy scalars as numbers)
        return json.loads(body)
