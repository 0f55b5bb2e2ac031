"""``hfvision.pipeline(...)``: transformers' ``pipeline()`` with safe defaults and hfvision's pipeline classes.

What it adds to ``transformers.pipeline``:

- CPU and float32 unless asked (transformers picks the first accelerator and ``dtype="auto"``);
- safetensors only unless ``allow_pickle=True``; ``trust_remote_code`` only when passed;
- ``verify=True``: sha256/git hashes of the downloaded files checked against the Hub before loading;
- ``"image-classification"`` uses :class:`FastImageClassificationPipeline` (batched preprocessing, faces mode,
  ``batch_size="auto"``, readable timm labels, ``use_test_size``); hfvision's own tasks are registered;
- a model folder or repo holding ``model.onnx`` runs on ONNX Runtime through ``hfvision.export.runtime``.

``transformers.pipeline(task, ...)`` for hfvision's own tasks (after ``import hfvision``) applies the same loading
rules through the tasks' model classes (:mod:`.auto_models`), with the options passed as ``model_kwargs``
(``allow_pickle``, ``verify``, ``file_name``, ``use_onnx``); it keeps transformers' device/dtype defaults.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ..utils.logging import get_logger
from .loading import (
    ONNX_FILES,
    LoadRefusedError,
    PickleRefusedError,
    check_local_weights,
    onnx_file,
    pickle_refusal,
    verified_snapshot,
)
from .registry import PIPELINE_CLASSES, TASKS, register_pipelines, task_of_saved_key

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import Pipeline

logger = get_logger(__name__)


def _saved_custom_tasks(model: str, revision: str | None, token) -> set[str]:
    """The ``custom_pipelines`` keys of a saved pipeline's config (empty when there is none or it is unreadable)."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(model, revision=revision, token=token)
    except (OSError, ValueError):
        return set()  # transformers.pipeline reports the problem with its own message
    return set(config.get("custom_pipelines") or {})


def _load_onnx(task: str | None, model: str, **kwargs):
    from ..export.loading import load_ort_pipeline

    return load_ort_pipeline(task, model, **kwargs)


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | Any | None = None,
    *,
    revision: str | None = None,
    device: int | str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = "float32",
    verify: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    backend: str = "auto",
    token: str | bool | None = None,
    **kwargs: Any,
) -> Pipeline:
    """Build a pipeline like ``transformers.pipeline``, with hfvision's classes and safe loading defaults.

    Args:
        task (`str`, *optional*): e.g. ``"gender-classification"``, ``"image-classification"``,
            ``"image-feature-pyramid"``, or any transformers task.
        model (`str`, `os.PathLike` or model, *optional*): Hub id or local folder; a task's default otherwise.
        revision (`str`, *optional*): branch, tag or commit of a Hub model.
        device (`int`, `str` or `torch.device`, *optional*, defaults to `"cpu"`): where to run.
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"float32"`): model dtype (``"auto"`` = as saved).
        verify (`bool`, *optional*, defaults to `False`): check the downloaded files against the Hub's hashes
            before loading (Hub models only); a mismatch raises `ChecksumMismatchError`.
        allow_pickle (`bool`, *optional*, defaults to `False`): also load pickle weights (``.bin``/``.pt``).
        trust_remote_code (`bool`, *optional*, defaults to `False`): run code shipped in the model repository.
        backend (`str`, *optional*, defaults to `"auto"`): ``"torch"``, ``"onnx"``, or ``"auto"`` (ONNX Runtime
            when the folder/repo holds ``model.onnx``).
        token (`str` or `bool`, *optional*): Hub token.
        kwargs: passed to ``transformers.pipeline`` and the pipeline class (``top_k``, ``batch_size``,
            ``use_test_size``, ``faces``, ``out_indices``, ``model_kwargs``, ``pipeline_class``, ...).

    >>> import hfvision
    >>> clf = hfvision.pipeline("gender-classification", model="rizvandwiki/gender-classification", verify=True)
    >>> clf("portrait.jpg", faces=True)
    [{'box': {...}, 'score_face': 0.97, 'labels': [{'label': 'female', 'score': 0.93}, ...]}]
    """
    import transformers

    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'torch', 'onnx'")
    register_pipelines()
    if model is None and task in TASKS and "default" in TASKS[task]:
        model, default_revision = TASKS[task]["default"]["model"]
        revision = revision or default_revision
        logger.warning("no model given for %r: using %s at revision %s", task, model, revision)
    if model is None:
        raise ValueError(f"task {task!r} has no default model in hfvision; pass model=<Hub id or folder>")
    if isinstance(model, os.PathLike):
        model = os.fspath(model)

    if isinstance(model, str):
        model = os.path.expanduser(model) if model.startswith("~") else model
        local = os.path.isdir(model)
        if not local and (os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model)):
            # clearly a path (a Hub id is "owner/name"): say so instead of a Hub repo-id validation error
            kind = "a file, not a model folder" if os.path.exists(model) else "no such folder"
            raise FileNotFoundError(f"{model}: {kind}; pass a folder with config.json or a Hub id like 'owner/name'")
        if verify and local:
            raise ValueError(
                f"verify=True checks files against the hashes the Hub records; {model} is a local folder "
                "with no such record. Pass a Hub id, or drop verify"
            )
        found = onnx_file(model, revision, token) if backend == "auto" else None
        if backend == "onnx" or found is not None:
            if verify:
                model, revision = verified_snapshot(model, revision, allow_pickle, token=token, onnx=True), None
            extra = {k: v for k, v in (("revision", revision), ("token", token)) if v is not None}
            if found not in (None, ONNX_FILES[0]) and "file_name" not in kwargs:
                extra["file_name"] = found  # an int8-only export: model_quantized.onnx
            return _load_onnx(task, model, **extra, **kwargs)
        if local:
            check_local_weights(model, allow_pickle)
        elif verify:
            model, revision = verified_snapshot(model, revision, allow_pickle=allow_pickle, token=token), None

    saved_keys = _saved_custom_tasks(model, revision, token) if isinstance(model, str) else set()
    if task is None:  # a model saved from an hfvision pipeline names its task
        tasks = {task_of_saved_key(key) for key in saved_keys} - {None}
        task = tasks.pop() if len(tasks) == 1 else None
    if task in PIPELINE_CLASSES and "pipeline_class" not in kwargs:
        module, name = PIPELINE_CLASSES[task].rsplit(".", 1)
        kwargs["pipeline_class"] = getattr(importlib.import_module(module), name)
    model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
    if not allow_pickle:
        model_kwargs.setdefault("use_safetensors", True)
    # The task's registered model class (auto_models) applies the same rules: pass on what was decided here. Not for
    # folders saved before the "hfvision-" key, whose custom_pipelines entry (transformers' own class) is used instead.
    if task in TASKS and task not in saved_keys:
        model_kwargs.setdefault("allow_pickle", allow_pickle)
        model_kwargs.setdefault("use_onnx", False)  # ONNX exports returned above (or backend="torch" was asked)
    try:
        return transformers.pipeline(
            task,
            model=model,
            revision=revision,
            device=device,
            dtype=dtype,
            token=token,
            trust_remote_code=trust_remote_code,
            model_kwargs=model_kwargs,
            **kwargs,
        )
    except LoadRefusedError as err:  # raised by the task's model class; say it with this function's opt-in
        if isinstance(err.__cause__, PickleRefusedError) and isinstance(model, str):
            raise pickle_refusal(model, err.__cause__.files) from err
        raise
    except OSError as err:
        if not allow_pickle and "safetensors" in str(err) and isinstance(model, str):
            raise pickle_refusal(model) from err
        raise
