"""``load_ort_pipeline``: the pipeline of a task (transformers' or hfvision's class) on an ONNX export, or the
ONNX Runtime Stable Diffusion pipeline for a diffusion export."""

from __future__ import annotations

import logging
import os

from ..utils.logging import get_logger
from .runtime import (
    ONNX_FILE,
    ORT_TASKS,
    QUANTIZED_FILE,
    OrtModelForFeaturePyramid,
    OrtModelForImageClassification,
    export_task,
    resolve_model_dir,
)

logger = get_logger(__name__)


def _pipeline_class(task: str):
    """The class the PyTorch pipeline of ``task`` uses: hfvision's (``hfvision.pipeline``) or transformers'."""
    import importlib

    try:
        from hfvision.pipelines.registry import PIPELINE_CLASSES, register_pipelines

        register_pipelines()
    except ImportError:  # pragma: no cover - hfvision.pipelines is optional for the runtime
        PIPELINE_CLASSES = {}
    if task in PIPELINE_CLASSES:
        module, name = PIPELINE_CLASSES[task].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    from transformers.pipelines import PIPELINE_REGISTRY

    try:
        _, targeted, _ = PIPELINE_REGISTRY.check_task(task)
    except KeyError as err:
        raise ValueError(f"unknown pipeline task {task!r}; ONNX Runtime pipelines support {ORT_TASKS}") from err
    impl = targeted["impl"]
    if isinstance(impl, str):
        module, name = impl.rsplit(".", 1)
        impl = getattr(importlib.import_module(module), name)
    return impl


def load_ort_pipeline(
    task: str | None,
    model: str | os.PathLike,
    *,
    file_name: str | None = None,
    provider: str | list[str] | None = None,
    session_options=None,
    intra_op_num_threads: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **pipeline_kwargs,
):
    """A pipeline for ``task`` that runs the ONNX export in ``model`` on ONNX Runtime.

    The pipeline is the same class as the PyTorch one (transformers' or hfvision's), with the same output
    format; only the model object is ONNX Runtime-backed. ``hfvision.pipeline`` calls this when the model
    directory/repo holds ``model.onnx``.

    Args:
        task (`str`): ``"image-classification"``, ``"gender-classification"``, ``"image-feature-pyramid"`` or
            ``"text-to-image"`` (returns an ``OrtStableDiffusion[XL]Pipeline``); ``None``: the export's task.
        model (`str` or `os.PathLike`): export directory or Hub repo id.
        file_name (`str`, *optional*): ONNX file inside it (``"model_quantized.onnx"`` for the int8 model).
        provider (`str` or `list[str]`, *optional*): ``"cpu"``/``"cuda"``; defaults to CUDA when available.
        session_options (`onnxruntime.SessionOptions`, *optional*): base session options.
        intra_op_num_threads (`int`, *optional*): threads per op.
        revision, token: for Hub repos.
        pipeline_kwargs: passed to the pipeline class (``top_k``, ``device``, ...).

    >>> clf = load_ort_pipeline("gender-classification", "out/gender-onnx")  # doctest: +SKIP
    >>> clf(image)  # doctest: +SKIP
    [{'label': 'female', 'score': 0.51}, {'label': 'male', 'score': 0.49}]
    """
    model_dir = resolve_model_dir(model, revision=revision, token=token)
    session_kwargs = dict(
        provider=provider, session_options=session_options, intra_op_num_threads=intra_op_num_threads
    )
    saved_task = export_task(model_dir)
    task = task or saved_task
    if task is None:
        raise ValueError(f"{model}: pass the task (the export has no export_report.json naming it)")
    if task in ("text-to-image", "dreambooth", "stable-diffusion") or (model_dir / "model_index.json").is_file():
        from .diffusion import load_ort_diffusion_pipeline

        return load_ort_diffusion_pipeline(model_dir, **session_kwargs, **pipeline_kwargs)
    if task not in ORT_TASKS:
        raise ValueError(f"task {task!r} has no ONNX Runtime pipeline; supported: {ORT_TASKS}")
    pyramid_export = saved_task == "image-feature-pyramid"
    if (task == "image-feature-pyramid") != pyramid_export and saved_task is not None:
        raise ValueError(f"{model} was exported for {saved_task!r}; it cannot serve the {task!r} pipeline")
    model_class = OrtModelForFeaturePyramid if task == "image-feature-pyramid" else OrtModelForImageClassification
    if file_name is None:  # the fp32 export, or the int8 model when it is the only one (an int8-only upload)
        file_name = (
            QUANTIZED_FILE
            if not (model_dir / ONNX_FILE).is_file() and (model_dir / QUANTIZED_FILE).is_file()
            else ONNX_FILE
        )
    ort_model = model_class.from_pretrained(model_dir, file_name=file_name, **session_kwargs)
    from transformers import AutoImageProcessor

    image_processor = pipeline_kwargs.pop("image_processor", None) or AutoImageProcessor.from_pretrained(model_dir)
    pipeline_kwargs.setdefault("device", -1 if ort_model.device.type == "cpu" else ort_model.device)
    cls = _pipeline_class(task)
    # transformers logs an error when the model class is not one of its AutoModel classes; ours stands in for one
    base_logger = logging.getLogger("transformers.pipelines.base")
    level = base_logger.level
    base_logger.setLevel(logging.CRITICAL)
    try:
        pipe = cls(model=ort_model, image_processor=image_processor, task=task, **pipeline_kwargs)
    finally:
        base_logger.setLevel(level)
    logger.info("ONNX Runtime %s pipeline (%s) on %s, %s", task, cls.__name__, ort_model.path, ort_model.providers[0])
    return pipe
