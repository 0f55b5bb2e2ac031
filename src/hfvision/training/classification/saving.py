"""Writing a fine-tuned classifier as a pipeline repo: model + processor (+ custom pipeline code) + card + metrics.

For transformers' own tasks (``image-classification``) the repo is a plain model repo. For a custom task such as
``gender-classification`` the task's pipeline class is built around the model and saved with transformers'
``Pipeline.save_pretrained``, which writes ``custom_pipelines`` into config.json and copies the pipeline's code.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from ...utils.logging import get_logger

logger = get_logger(__name__)

#: Files and folders of an output directory that are never part of the published repo.
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "_*", ".*", "*.bin", "*.pt", "*.pth", "trainer_state.json"]


def pipeline_class_for_task(task: str):
    """The pipeline class saved with a custom ``task``, or ``None`` for transformers' own tasks.

    Raises ``ValueError`` for a task no pipeline is registered for, or one that is not an image task.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    from ...pipelines.registry import register_pipelines

    register_pipelines()
    entry = PIPELINE_REGISTRY.supported_tasks.get(task)
    image_tasks = sorted(
        t for t, e in PIPELINE_REGISTRY.supported_tasks.items() if e.get("type") in ("image", "multimodal")
        and "classification" in t
    )  # fmt: skip
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
