"""``export_onnx``: PyTorch model (object, directory or Hub repo) -> validated ONNX export in Optimum's layout.

Classifiers become ``model.onnx`` (+ ``model.onnx_data`` above 2 GB), ``config.json``, the preprocessor config
and ``export_report.json``; Stable Diffusion / DreamBooth pipelines are handled by :mod:`.diffusion`. The
output is written to a temporary directory and moved into place only when validation passed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.io import atomic_dir, atomic_write
from ..utils.logging import get_logger
from .configs import DIFFUSION_TASKS, TASK_TO_OPTIMUM, describe_supported, get_export_config
from .core import (
    EXTERNAL_DATA_THRESHOLD,
    ExportResult,
    build_report,
    check_opset,
    check_output_dir,
    export_to_onnx,
)
from .errors import UnsupportedModelError
from .runtime import ONNX_FILE, REPORT_FILE, resolve_model_dir

logger = get_logger(__name__)

TASKS = ("auto", *TASK_TO_OPTIMUM, *DIFFUSION_TASKS)


@dataclass
class _Source:
    model: Any  # the torch module that is exported
    library: str  # "transformers" | "timm"
    task: str
    name: str
    processor: Any = None
    source_dir: Path | None = None
    save_config: Any = None  # callable(out_dir)


# ---- loading ------------------------------------------------------------------------------------------------
def _normalize_task(task: str | None) -> str:
    task = (task or "auto").strip().lower()
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not supported for ONNX export; choose one of {TASKS}")
    return task


def _load_source(
    model_or_dir,
    task: str,
    processor=None,
    revision=None,
    token=None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> _Source | Path:
    """The torch model to export (or, for a diffusion pipeline directory, the directory). A directory or repo whose
    weights are pickle files only is refused unless ``allow_pickle`` (hfvision's safetensors-only rule)."""
    import torch

    if isinstance(model_or_dir, torch.nn.Module):
        return _source_from_module(model_or_dir, task, processor)
    if not isinstance(model_or_dir, (str, os.PathLike)):
        from diffusers import DiffusionPipeline

        if isinstance(model_or_dir, DiffusionPipeline):
            return model_or_dir
        raise TypeError(
            f"expected a torch model, a diffusers pipeline, a directory or a Hub repo id, "
            f"got {type(model_or_dir).__name__}"
        )
    from optimum.exporters.tasks import TasksManager

    from ..pipelines.loading import check_local_weights

    model_dir = resolve_model_dir(model_or_dir, revision=revision, token=token)
    if (model_dir / ONNX_FILE).is_file():
        raise ValueError(f"{model_or_dir} already holds an ONNX export; pass the PyTorch model directory")
    check_local_weights(model_dir, allow_pickle)  # before anything is deserialized
    if not (model_dir / "config.json").is_file() and not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_or_dir} has no config.json or model_index.json; is it a model directory?")
    library = TasksManager.infer_library_from_model(str(model_dir))
    if library == "diffusers":
        if task not in ("auto", *DIFFUSION_TASKS):
            raise ValueError(f"{model_or_dir} is a diffusers pipeline; use task 'text-to-image', not {task!r}")
        return model_dir
    if task in DIFFUSION_TASKS:
        raise ValueError(f"task {task!r} needs a diffusers pipeline directory (model_index.json) at {model_or_dir}")
    if task == "auto":  # a folder saved from an hfvision pipeline (e.g. by the trainer) keeps its task
        task = _saved_pipeline_task(model_dir / "config.json") or task
    name = str(model_or_dir)
    if library == "timm":
        import timm

        features = task == "image-feature-pyramid"
        kwargs = {"features_only": True} if features else {}
        model = timm.create_model(f"local-dir:{model_dir}", pretrained=True, exportable=True, **kwargs)
        return _timm_source(
            model,
            "image-classification" if task == "auto" else task,
            name,
            processor,
            config_src=model_dir / "config.json",
        )
    if library != "transformers":
        raise UnsupportedModelError(
            f"{model_or_dir}: {library} models are not supported; supported: {describe_supported()}"
        )
    from transformers import AutoConfig, AutoImageProcessor

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if task == "auto":
        if not any(a.endswith("ForImageClassification") for a in config.architectures or []):
            raise UnsupportedModelError(
                f"cannot infer the task of {model_or_dir} (architectures "
                f"{config.architectures}); pass --task. Supported: {describe_supported()}"
            )
        task = "image-classification"
    if task == "image-feature-pyramid":
        raise UnsupportedModelError(
            f"image-feature-pyramid export needs a timm model; {model_or_dir} is transformers {config.model_type}"
        )
    model_class = TasksManager.get_model_class_for_task(
        TASK_TO_OPTIMUM[task], framework="pt", model_type=config.model_type, library="transformers"
    )
    safetensors_only = None if allow_pickle else True
    model = model_class.from_pretrained(
        model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code, use_safetensors=safetensors_only
    )
    if processor is None:
        try:
            processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            logger.warning("no image processor in %s (%s): validation on real photos is skipped", model_dir, err)
    return _Source(model, "transformers", task, name, processor, model_dir, model.config.save_pretrained)


def _saved_pipeline_task(config_file: Path) -> str | None:
    """hfvision's task declared by a saved pipeline's ``custom_pipelines`` (config.json), if exactly one."""
    from ..pipelines.registry import task_of_saved_key

    try:
        custom = json.loads(config_file.read_text()).get("custom_pipelines") or {}
    except (OSError, ValueError):
        return None
    tasks = {task_of_saved_key(key) for key in custom} - {None}
    return tasks.pop() if len(tasks) == 1 and tasks <= set(TASKS) else None


def _drop_pipeline_code(config_file: Path) -> None:
    """An export holds no pipeline code: drop the ``custom_pipelines`` a saved pipeline's config declares (the task
    is kept in export_report.json)."""
    config = json.loads(config_file.read_text())
    if config.pop("custom_pipelines", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _source_from_module(model, task: str, processor) -> _Source:
    module = type(model).__module__
    if module.startswith("timm"):
        return _timm_source(model, "image-classification" if task == "auto" else task, type(model).__name__, processor)
    if getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper":
        if task == "image-feature-pyramid":
            raise ValueError(
                "image-feature-pyramid export of a TimmWrapper object is not supported; "
                "pass the model directory instead"
            )
        wrapper_config = model.config
        return _timm_source(
            model.timm_model,
            "image-classification" if task == "auto" else task,
            type(model).__name__,
            processor,
            save_config=wrapper_config.save_pretrained,
        )
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        if task == "auto":
            task = "image-classification"
        return _Source(
            model, "transformers", task, type(model).__name__, processor, None, model.config.save_pretrained
        )
    raise UnsupportedModelError(
        f"{type(model).__name__} ({module}) is not supported; supported: {describe_supported()}"
    )


def _timm_source(model, task: str, name: str, processor, config_src: Path | None = None, save_config=None) -> _Source:
    from optimum.exporters.tasks import TasksManager

    features = hasattr(model, "feature_info") and type(model).__name__.startswith("Feature")
    if task == "image-feature-pyramid" and not features:
        raise ValueError(
            f"{name} is not a timm features_only model; create it with features_only=True or pass the model directory"
        )
    if task != "image-feature-pyramid" and features:
        raise ValueError(f"{name} is a timm features_only model; export it with task image-feature-pyramid")
    TasksManager.standardize_model_attributes(model, library_name="timm")  # model.config <- pretrained_cfg
    extra = {}
    if features:
        levels = tuple(model.feature_info.out_indices)
        if levels != tuple(range(len(levels))):
            raise UnsupportedModelError(
                f"{name}: features_only levels {levels} are not 0..{len(levels) - 1}; create "
                "the timm model with out_indices covering every level"
            )
        info = model.feature_info.get_dicts(keys=("num_chs", "reduction", "module"))
        model.config.feature_channels = [level["num_chs"] for level in info]
        # read back by hfvision.export.runtime.OrtModelForFeaturePyramid (the pipeline's feature levels)
        extra = {"onnx_export": {"task": "image-feature-pyramid", "feature_info": info}}
    if processor is None:
        from transformers import TimmWrapperImageProcessor

        processor = TimmWrapperImageProcessor(pretrained_cfg=dict(model.pretrained_cfg))

    def write_config(out_dir: Path) -> None:
        if save_config is not None:
            save_config(out_dir)
        elif config_src is not None:
            shutil.copyfile(config_src, out_dir / "config.json")
        else:
            from timm.models._hub import save_config_for_hf

            from ..utils.timm_config import fix_timm_config

            save_config_for_hf(model, str(out_dir / "config.json"))
            fix_timm_config(out_dir / "config.json")
        if extra:
            config = json.loads((out_dir / "config.json").read_text())
            config.update(extra)
            (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    return _Source(model, "timm", task, name, processor, None, write_config)


# ---- the public entry point -----------------------------------------------------------------------------------
def export_onnx(
    model_or_dir,
    output_dir: str | os.PathLike,
    task: str = "auto",
    opset: int | None = None,
    dynamic_axes: bool = True,
    validate: bool = True,
    atol: float | None = None,
    overwrite: bool = False,
    *,
    processor=None,
    quantize: str | None = None,
    quantize_threshold: float = 0.99,
    force_quantize: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> ExportResult:
    """Export a classifier, feature pyramid or Stable Diffusion pipeline to ONNX, validated against PyTorch.

    Args:
        model_or_dir: a transformers/timm model object, a diffusers pipeline, a local directory or a Hub repo id.
        output_dir (`str` or `os.PathLike`): where the export goes (must be empty unless ``overwrite``).
        task (`str`, *optional*, defaults to `"auto"`): ``"image-classification"``, ``"gender-classification"``,
            ``"image-feature-pyramid"`` (timm ``features_only``) or ``"text-to-image"``; ``"auto"`` infers it.
        opset (`int`, *optional*): ONNX opset (default 17; each family has a minimum).
        dynamic_axes (`bool`, *optional*, defaults to `True`): dynamic batch (and height/width where the model
            allows it); ``False`` fixes batch 1 at the native size.
        validate (`bool`, *optional*, defaults to `True`): compare ONNX Runtime with PyTorch and fail on mismatch.
        atol (`float`, *optional*): validation tolerance (default: the config's, 1e-4).
        overwrite (`bool`, *optional*, defaults to `False`): replace a non-empty ``output_dir``.
        processor (*optional*): image processor for real-photo validation (loaded from the model dir if omitted).
        quantize (`str`, *optional*): ``"int8"`` (the family's best mode), ``"int8-dynamic"`` or ``"int8-static"``.
        quantize_threshold (`float`, *optional*, defaults to 0.99): minimum int8/fp32 top-1 agreement.
        force_quantize (`bool`, *optional*, defaults to `False`): write the int8 model even below the threshold.
        revision, token, trust_remote_code: for loading from the Hub.
        allow_pickle (`bool`, *optional*, defaults to `False`): also load a source whose weights are pickle files
            only (``pytorch_model.bin``), which can run code when loaded; by default such a source is refused.
        external_data_threshold (`int`, *optional*): weights above this many bytes go to ``model.onnx_data``.

    Raises:
        `UnsupportedModelError`, `OpsetError`, `FileExistsError`, `ValidationFailedError` (nothing is written),
        `PickleRefusedError` (pickle-only weights without ``allow_pickle``),
        `QuantizationRefusedError` (the fp32 export is written, the int8 model is not).

    >>> from hfvision.export import export_onnx
    >>> result = export_onnx("rizvandwiki/gender-classification", "gender-onnx", quantize="int8")  # doctest: +SKIP
    >>> result.report["validation"]["passed"]  # doctest: +SKIP
    True
    """
    output_dir = Path(output_dir)
    task = _normalize_task(task)
    check_opset(opset)
    check_output_dir(output_dir, overwrite)
    source = _load_source(model_or_dir, task, processor, revision, token, trust_remote_code, allow_pickle)
    if not isinstance(source, _Source):
        if quantize:
            raise ValueError("int8 quantization is offered for classifiers, not diffusion pipelines")
        from .diffusion import export_diffusion_onnx

        return export_diffusion_onnx(
            source,
            output_dir,
            opset=opset,
            validate=validate,
            atol=atol,
            overwrite=overwrite,
            external_data_threshold=external_data_threshold,
        )

    export_config = get_export_config(source.model, source.task, source.library)
    opset = check_opset(opset, export_config, source.name)
    static_shape = None if dynamic_axes else (1, export_config.validation_sizes()[0])
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        files = export_to_onnx(
            source.model,
            export_config,
            tmp / ONNX_FILE,
            opset,
            dynamic_axes,
            batch_size=2 if dynamic_axes else 1,
            external_data_threshold=external_data_threshold,
        )
        validation = None
        if validate:
            from .validate import image_inputs, validate_onnx

            real = image_inputs(source.processor) if source.processor is not None else None
            validation = validate_onnx(
                source.model,
                export_config,
                tmp / ONNX_FILE,
                atol=atol,
                real_inputs=real,
                static_shape=static_shape,
                name=source.name,
            )
            if real is None:
                validation.notes.append("no image processor: validated on dummy inputs only")
            validation.raise_for_failure()
        source.save_config(tmp)
        _drop_pipeline_code(tmp / "config.json")
        if source.processor is not None and source.library != "timm":
            source.processor.save_pretrained(tmp)
        report = build_report(
            source.task,
            source.name,
            source.library,
            export_config,
            opset,
            dynamic_axes,
            {"model": files},
            tmp,
            validation,
        )
        with atomic_write(tmp / REPORT_FILE, "w") as f:
            json.dump(report, f, indent=2)
    logger.info(
        "ONNX export of %s written to %s%s",
        source.name,
        output_dir,
        " (validation passed)" if validation is not None else " (NOT validated)",
    )
    result = ExportResult(output_dir, report, validation, [output_dir / f.name for f in files])
    if quantize:
        from .quantize import quantize_onnx

        mode = {"int8": "auto", "int8-dynamic": "dynamic", "int8-static": "static"}.get(quantize)
        if mode is None:
            raise ValueError(f"quantize={quantize!r}; choose 'int8', 'int8-dynamic' or 'int8-static'")
        quant = quantize_onnx(output_dir, mode=mode, threshold=quantize_threshold, force=force_quantize)
        result.report = json.loads((output_dir / REPORT_FILE).read_text())
        result.onnx_files.append(Path(quant["file"]))
    return result


def push_onnx_to_hub(
    export_dir: str | os.PathLike,
    repo_id: str,
    token: str | bool | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint_handler: bool = True,
) -> str:
    """Upload an export directory to the Hub (creating the repo); returns the commit URL.

    With ``endpoint_handler`` (default) the export gets a ``handler.py`` and ``requirements.txt`` first, so Hugging
    Face Inference Endpoints can serve the repo as it is (see :func:`hfvision.hub.endpoints.write_endpoint_files`).

    >>> push_onnx_to_hub("gender-onnx", "me/gender-classification-onnx")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    export_dir = Path(export_dir)
    if not (export_dir / ONNX_FILE).is_file() and not (export_dir / "unet" / ONNX_FILE).is_file():
        raise FileNotFoundError(f"{export_dir} holds no ONNX export (model.onnx or unet/model.onnx)")
    if endpoint_handler:
        from ..hub.endpoints import write_endpoint_files
        from .runtime import export_task

        write_endpoint_files(export_dir, "onnx", task=export_task(export_dir))
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(export_dir), repo_id=repo_id, commit_message=commit_message or "Upload ONNX export (hfvision)"
    )
    logger.info("pushed %s to %s", export_dir, repo_id)
    return str(getattr(info, "commit_url", info))
