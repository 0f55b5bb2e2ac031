"""hfvision: Hugging Face-native image classification, DreamBooth personalisation and deployment.

``import hfvision`` is light: submodules and heavy libraries (torch, transformers, diffusers) load
on first use of the names below. It also registers hfvision's pipeline tasks ("gender-classification",
"image-feature-pyramid") with transformers, lazily: see :mod:`hfvision.pipelines.registry`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# public name -> (module that defines it, attribute in that module; None = the module itself),
# imported lazily on first attribute access
_LAZY: dict[str, tuple[str, str | None]] = {
    "testing": ("hfvision.testing", None),
    "pipeline": ("hfvision.pipelines.factory", "pipeline"),
    "GenderClassificationPipeline": ("hfvision.pipelines.classification", "GenderClassificationPipeline"),
    "ImageFeaturePyramidPipeline": ("hfvision.pipelines.features", "ImageFeaturePyramidPipeline"),
    "classify_files": ("hfvision.inference.classify", "classify_files"),
    "DreamBoothPipeline": ("hfvision.pipelines.dreambooth", "DreamBoothPipeline"),
    "DreamBoothXLPipeline": ("hfvision.pipelines.dreambooth_xl", "DreamBoothXLPipeline"),
    "DreamBoothFluxPipeline": ("hfvision.pipelines.dreambooth_flux", "DreamBoothFluxPipeline"),
    "DreamBoothSD3Pipeline": ("hfvision.pipelines.dreambooth_sd3", "DreamBoothSD3Pipeline"),
    "DreamBoothConfig": ("hfvision.training", "DreamBoothConfig"),
    "DreamBoothTrainer": ("hfvision.training", "DreamBoothTrainer"),
    "ImageClassificationConfig": ("hfvision.training", "ImageClassificationConfig"),
    "ImageClassificationTrainer": ("hfvision.training", "ImageClassificationTrainer"),
    "prepare_instance_images": ("hfvision.data", "prepare_instance_images"),
    "Session": ("hfvision.data", "Session"),
    "HubSessionMirror": ("hfvision.hub", "HubSessionMirror"),
    "load_pipeline": ("hfvision.models", "load_pipeline"),
    "to_single_file": ("hfvision.conversion", "to_single_file"),
    "from_single_file": ("hfvision.conversion", "from_single_file"),
    "export_onnx": ("hfvision.export", "export_onnx"),
    "models": ("hfvision.models", None),
    "conversion": ("hfvision.conversion", None),
    "export": ("hfvision.export", None),
    "data": ("hfvision.data", None),
    "training": ("hfvision.training", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfvision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


# `transformers.pipeline("gender-classification")` works after `import hfvision`, without importing transformers here.
from .pipelines.registry import install_registration_hook as _install_registration_hook  # noqa: E402

_install_registration_hook()

if TYPE_CHECKING:  # pragma: no cover
    from . import testing  # noqa: F401
    from .inference.classify import classify_files  # noqa: F401
    from .pipelines.classification import GenderClassificationPipeline  # noqa: F401
    from .pipelines.factory import pipeline  # noqa: F401
    from .pipelines.features import ImageFeaturePyramidPipeline  # noqa: F401
