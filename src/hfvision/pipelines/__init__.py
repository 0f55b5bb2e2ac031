"""Inference pipelines. Importing this package is light; the classes load on first use.

hfvision's tasks are registered with transformers' ``PIPELINE_REGISTRY`` by ``import hfvision``
(see :mod:`.registry`), so ``transformers.pipeline("gender-classification")`` works too, with hfvision's loading
rules (their model classes are :mod:`.auto_models`).
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

# public name -> submodule defining it (loaded lazily: the classes import torch and transformers)
_LAZY = {
    "pipeline": "factory",
    "FastImageClassificationPipeline": "classification",
    "GenderClassificationPipeline": "classification",
    "ImageFeaturePyramidPipeline": "features",
    "register_pipelines": "registry",
    "HfvisionAutoModelForImageClassification": "auto_models",
    "HfvisionAutoModel": "auto_models",
    "LoadRefusedError": "loading",
    "PickleRefusedError": "loading",
    "ChecksumMismatchError": "loading",
    "DreamBoothPipeline": "dreambooth",
    "DreamBoothXLPipeline": "dreambooth_xl",
    "DreamBoothFluxPipeline": "dreambooth_flux",
    "DreamBoothSD3Pipeline": "dreambooth_sd3",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
