"""hfvision's tasks in transformers' pipeline registry, added without importing transformers early.

``import hfvision`` calls :func:`install_registration_hook`: if ``transformers.pipelines`` is already imported the
tasks are registered at once, otherwise a one-shot import hook registers them right after ``transformers.pipelines``
finishes importing. Either way ``transformers.pipeline("gender-classification", ...)`` works after ``import hfvision``,
and ``import hfvision`` itself stays light (this module imports only the standard library and a small utils module).

Entries use dotted-path ``impl`` strings, the form transformers (>= 5) uses for its own tasks (resolved lazily by
``transformers.pipelines._resolve_impl``), so registering imports none of hfvision's pipeline classes (only the
small :mod:`.auto_models`) and cannot create an import cycle. ``PipelineRegistry.register_pipeline`` needs the class object, which is why the entry is
written into ``PIPELINE_REGISTRY.supported_tasks`` with the same layout it would build.

The model classes (``"pt"``) are hfvision's auto classes (:mod:`.auto_models`): ``transformers.pipeline`` loads a
model named by a string with them first, so the stock factory applies hfvision's loading rules (safetensors only,
``verify``, ONNX exports on ONNX Runtime).

Saved pipelines: a model saved from an hfvision pipeline declares its code under ``custom_pipelines`` with the key
:func:`saved_task_key` (``"hfvision-gender-classification"``), not the task's own name: transformers demands
``trust_remote_code`` for a task named in that key even when the task is registered in the process, and a
repo's single key is what ``pipeline(model=..., trust_remote_code=True)`` infers as the task where hfvision is not
installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Any

from ..utils.custom_pipelines import SAVED_TASK_PREFIX, saved_task

# Default checkpoint of "gender-classification": ViTForImageClassification (ViT-base/16, labels female/male).
# Revision taken from the project's reference notes (main when last seen); confirm it when the Hub is reachable.
# classification.py repeats these two values (it must stay importable without hfvision); a test keeps them equal.
GENDER_DEFAULT_MODEL = "rizvandwiki/gender-classification"
GENDER_DEFAULT_REVISION = "380b17658cc037b246aab0b62a20deb7dd607e65"
#: the one default task of ``hfvision classify``, ``hfvision serve`` (:class:`~hfvision.serving.ServeConfig`) and the
#: UI's Classify tab (:class:`~hfvision.ui.UIConfig`)
DEFAULT_TASK = "gender-classification"

_AUTO_MODELS = "hfvision.pipelines.auto_models"

#: task -> registry entry; "pt" names the model classes (dotted paths), "impl" the pipeline class.
TASKS: dict[str, dict[str, Any]] = {
    "gender-classification": {
        "impl": "hfvision.pipelines.classification.GenderClassificationPipeline",
        "pt": (f"{_AUTO_MODELS}.HfvisionAutoModelForImageClassification",),
        "default": {"model": (GENDER_DEFAULT_MODEL, GENDER_DEFAULT_REVISION)},
        "type": "image",
    },
    "image-feature-pyramid": {
        "impl": "hfvision.pipelines.features.ImageFeaturePyramidPipeline",
        "pt": (f"{_AUTO_MODELS}.HfvisionAutoModel",),
        "type": "image",
    },
}

#: pipeline class per task for ``hfvision.pipeline`` and the ONNX Runtime pipelines: hfvision's own tasks, and the
#: stock task whose class hfvision replaces by a subclass. Passing the class also means a model saved with
#: `custom_pipelines` runs hfvision's code, not the repo's copy. (Here, not in factory.py, so that
#: hfvision.export.runtime can read it without importing the factory, which imports the runtime.)
PIPELINE_CLASSES: dict[str, str] = {
    "image-classification": "hfvision.pipelines.classification.FastImageClassificationPipeline",
    **{task: spec["impl"] for task, spec in TASKS.items()},
}

_TARGET = "transformers.pipelines"
_lock = threading.Lock()


def saved_task_key(task: str) -> str:
    """The ``custom_pipelines`` key under which a pipeline of hfvision's ``task`` is saved.

    >>> saved_task_key("gender-classification")
    'hfvision-gender-classification'
    """
    return f"{SAVED_TASK_PREFIX}{task}"


def task_of_saved_key(key: str) -> str | None:
    """hfvision's task for a saved ``custom_pipelines`` key (also the task name itself, as older versions saved it).

    >>> task_of_saved_key("hfvision-gender-classification")
    'gender-classification'
    """
    task = saved_task(key)
    return task if task in TASKS else None


def _resolve_class(name: str):
    import importlib

    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module or "transformers"), attr)


def register_pipelines() -> None:
    """Add hfvision's tasks to ``transformers.pipelines.PIPELINE_REGISTRY`` (idempotent; imports transformers).

    >>> register_pipelines()
    >>> from transformers.pipelines import PIPELINE_REGISTRY
    >>> "gender-classification" in PIPELINE_REGISTRY.get_supported_tasks()
    True
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    for task, spec in TASKS.items():
        entry = dict(spec, pt=tuple(_resolve_class(name) for name in spec["pt"]))
        current = PIPELINE_REGISTRY.supported_tasks.get(task)
        if current is not None:
            impl = current["impl"]
            if (impl if isinstance(impl, str) else f"{impl.__module__}.{impl.__qualname__}") != spec["impl"]:
                continue  # someone registered their own pipeline under this name: keep it
        PIPELINE_REGISTRY.supported_tasks[task] = entry


class _RegisterAfterExec(importlib.abc.Loader):
    """Loader wrapper: runs the real loader, then registers hfvision's tasks into the fresh module."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._loader  # hide the wrapper from now on
        _register_quietly()

    def __getattr__(self, name: str):  # get_source, get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _TransformersPipelinesHook(importlib.abc.MetaPathFinder):
    """One-shot meta path finder: wraps the loader of ``transformers.pipelines`` and removes itself."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        _uninstall()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None:
            for finder in sys.meta_path:
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisterAfterExec(spec.loader)
        return spec


def _register_quietly() -> None:
    # An import hook must never break the import it observes: a failure here only means the tasks are not
    # registered (and `hfvision.pipeline` registers again, loudly, when it is called).
    try:
        register_pipelines()
    except Exception as err:  # noqa: BLE001 - see comment above
        import logging

        logging.getLogger(__name__).warning("could not register hfvision pipelines with transformers: %s", err)


def _uninstall() -> None:
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TransformersPipelinesHook)]


def install_registration_hook() -> None:
    """Register now if ``transformers.pipelines`` is imported, else once it is (called by ``import hfvision``)."""
    module = sys.modules.get(_TARGET)
    if module is not None and hasattr(module, "PIPELINE_REGISTRY"):
        _register_quietly()
        return
    with _lock:
        if not any(isinstance(f, _TransformersPipelinesHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _TransformersPipelinesHook())
