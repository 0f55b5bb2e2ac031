"""The output directory of a classifier run: its pipeline repo, and the rules that keep other runs' work.

For transformers' own tasks (``image-classification``) the repo is a plain model repo. For a custom task such as
``gender-classification`` the task's pipeline class is built around the model and saved with transformers'
``Pipeline.save_pretrained``, which writes ``custom_pipelines`` into config.json and copies the pipeline's code.

No lost work: the output directory and each checkpoint record the run's identity (:func:`run_identity`, a hash of
the options that make a different run: model, data, task, LoRA, seed) in ``hfvision_run.json``. Training into a
directory that already holds a model or checkpoints is refused unless the run is resumed
(``resume_from_checkpoint``) or replaced (``overwrite_output_dir``), and ``resume_from_checkpoint="latest"`` only
picks a checkpoint of the same run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...utils.io import checkpoint_step
from ...utils.logging import get_logger

logger = get_logger(__name__)

RUN_FILE = "hfvision_run.json"
#: Files and folders of an output directory that are never part of the published repo.
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "_*", ".*", "*.bin", "*.pt", "*.pth", "trainer_state.json", RUN_FILE]
#: The options that make a different run (changing the others, e.g. num_train_epochs, may continue the same run).
RUN_IDENTITY_FIELDS = (
    "model_name_or_path",
    "model_revision",
    "data",
    "data_revision",
    "task",
    "train_split",
    "validation_split",
    "validation_size",
    "image_column",
    "label_column",
    "max_train_samples",
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "seed",
    "data_seed",
)
#: What in an output directory is a run's work: a saved model (or adapter) and Trainer checkpoints.
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")


def pipeline_class_for_task(task: str):
    """The pipeline class saved with a custom ``task``, or ``None`` for transformers' own tasks.

    Raises ``ValueError`` for a task no pipeline is registered for, or one that is not an image task.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    from ...pipelines.registry import register_pipelines

    register_pipelines()
    entry = PIPELINE_REGISTRY.supported_tasks.get(task)
    image_tasks = sorted(
        t
        for t, e in PIPELINE_REGISTRY.supported_tasks.items()
        if e.get("type") in ("image", "multimodal") and "classification" in t
    )
    if entry is None:
        raise ValueError(f"task={task!r} is not a registered pipeline task; use one of {', '.join(image_tasks)}")
    from transformers import AutoModelForImageClassification

    # hfvision's tasks register a subclass (hfvision.pipelines.auto_models) of the auto class
    if not any(isinstance(c, type) and issubclass(c, AutoModelForImageClassification) for c in entry.get("pt", ())):
        raise ValueError(f"task={task!r} does not run an image classifier; use one of {', '.join(image_tasks)}")
    impl = entry["impl"]
    if isinstance(impl, str):
        module, _, name = impl.rpartition(".")
        impl = getattr(importlib.import_module(module), name)
    return None if impl.__module__.startswith("transformers.") else impl


def write_model_files(model, processor, out_dir: str | os.PathLike, task: str) -> list[str]:
    """Save ``model`` and ``processor`` into ``out_dir``; for a custom task also its pipeline code and
    ``custom_pipelines`` entry. Returns the names of the files written."""
    out_dir = Path(out_dir)
    before = set(os.listdir(out_dir)) if out_dir.exists() else set()
    cls = pipeline_class_for_task(task)
    if cls is None:
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    else:
        # Pipeline.save_pretrained writes custom_pipelines from the class's `_registered_impl`, copies the class's
        # module (and its relative imports) and saves model + image processor.
        pipe = cls(model=model, image_processor=processor, device=model.device)
        pipe.save_pretrained(out_dir)
        logger.info("saved the %r pipeline code (%s) with the model", task, cls.__name__)
    return sorted(set(os.listdir(out_dir)) - before)


class StagedDirectory:
    """Write into a temporary sibling folder, then move every entry into ``target`` (each move atomic).

    ``target`` may already hold other files (e.g. Trainer checkpoints), which are kept.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".pipeline-", dir=self.target))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for entry in sorted(self.tmp.iterdir()):
                    dest = self.target / entry.name
                    if dest.is_dir() and not dest.is_symlink():
                        shutil.rmtree(dest)
                    os.replace(entry, dest)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- no lost work ----------------------------------------------------------------------------------------------------
def run_identity(config) -> dict[str, Any]:
    """``{"run_id": hash, "fields": {...}}`` of a config: equal for the same model, data, task, LoRA and seed.

    Local paths count by their absolute location, so the same folders named from another directory are one run.
    """
    values = {}
    for name in RUN_IDENTITY_FIELDS:
        value = getattr(config, name, None)
        if name in ("model_name_or_path", "data") and isinstance(value, str) and os.path.exists(value):
            value = os.path.abspath(value)
        values[name] = value
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"run_id": digest, "fields": values}


def write_run_file(directory: str | os.PathLike, identity: dict[str, Any]) -> None:
    """Record ``identity`` in ``directory`` (the output directory or a checkpoint)."""
    from ...utils.io import atomic_write

    with atomic_write(Path(directory) / RUN_FILE, "w") as f:
        json.dump(identity, f, indent=2, sort_keys=True)


def read_run_file(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The identity recorded in ``directory``, or ``None`` (written before hfvision recorded one, or unreadable)."""
    try:
        return json.loads((Path(directory) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def existing_work(output_dir: str | os.PathLike) -> list[str]:
    """Names of a run's work in ``output_dir``: checkpoints (newest first), then a saved model or adapter."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    models = [name for name in (*MODEL_FILES, "adapter") if (folder / name).exists()]
    return [p.name for p in reversed(checkpoints(folder))] + models


def check_output_dir(config) -> None:
    """Refuse to train into an output directory holding a model or checkpoints, unless resuming or overwriting.

    Raises:
        `FileExistsError`: one line naming what is there, ``resume_from_checkpoint`` and ``overwrite_output_dir``.
    """
    if config.resume_from_checkpoint or getattr(config, "overwrite_output_dir", False):
        return
    work = existing_work(config.output_dir)
    if work:
        shown = ", ".join(work[:3]) + (", ..." if len(work) > 3 else "")
        raise FileExistsError(
            f"output_dir {config.output_dir} already holds a run's model or checkpoints ({shown}); continue that run "
            "with resume_from_checkpoint='latest' (--resume_from_checkpoint latest), replace it with "
            "overwrite_output_dir=True (--overwrite_output_dir), or choose another output_dir"
        )


def _differences(recorded: dict, identity: dict) -> str:
    old, new = recorded.get("fields", {}), identity["fields"]
    changed = [f"{k}={old.get(k)!r} (now {new[k]!r})" for k in new if old.get(k) != new[k]]
    return ", ".join(changed[:3]) or "its run_id"


def resolve_resume_checkpoint(config, identity: dict[str, Any], requested: str | bool) -> str | bool:
    """The checkpoint to resume: ``True`` means the newest checkpoint *of this run* in ``output_dir``.

    Raises:
        `ValueError`: ``True`` was asked but every checkpoint there belongs to another run.
    """
    if requested is not True:
        recorded = read_run_file(requested)
        if recorded is not None and recorded.get("run_id") != identity["run_id"]:
            logger.warning(
                "resuming %s, written by a run with other options: %s", requested, _differences(recorded, identity)
            )
        return requested
    found = checkpoints(config.output_dir)
    if not found:
        return True  # Trainer reports that there is no checkpoint
    for checkpoint in reversed(found):
        recorded = read_run_file(checkpoint)
        if recorded is None or recorded.get("run_id") == identity["run_id"]:  # None: written before run files
            return str(checkpoint)
    newest = read_run_file(found[-1]) or {}
    raise ValueError(
        f"resume_from_checkpoint='latest': every checkpoint in {config.output_dir} ({found[-1].name}, ...) belongs "
        f"to another run ({_differences(newest, identity)}); pass that checkpoint's path to resume it anyway, "
        "overwrite_output_dir=True (--overwrite_output_dir) to replace that run, or choose another output_dir"
    )


def remove_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """``overwrite_output_dir``: delete the checkpoints of the run being replaced (``latest`` must never find them)."""
    removed = []
    for checkpoint in checkpoints(output_dir):
        shutil.rmtree(checkpoint)
        removed.append(checkpoint.name)
    if removed:
        logger.warning(
            "overwrite_output_dir: removed %d checkpoint(s) of the replaced run: %s", len(removed), ", ".join(removed)
        )
    return removed
