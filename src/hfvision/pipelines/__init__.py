"""Inference pipelines. Importing this package is light; the classes load on first use.

hfvision's tasks are registered with transformers' ``PIPELINE_REGISTRY`` by ``import hfvision``
(see :mod:`.registry`), so ``transformers.pipeline("gender-classification")`` works too.
"""

from __future__ import annotations

import importlib

# public name -> submodule defining it (loaded lazily: the classes import torch and transformers)
_LAZY = {
    "pipeline": "factory",
    "FastImageClassificationPipeline": "classification",
    "GenderClassificationPipeline": "classification",
    "ImageFeaturePyramidPipeline": "features",
    "register_pipelines": "registry",
    "DreamBoothPipeline": "dreambooth",
    "DreamBoothXLPipeline": "dreambooth_xl",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
