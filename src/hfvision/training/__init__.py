"""Training: DreamBooth for Stable Diffusion (:mod:`.dreambooth`) and image-classifier fine-tuning
(:mod:`.classification`). Names load lazily, so ``import hfvision.training`` does not import torch.

>>> from hfvision.training import DreamBoothConfig, DreamBoothTrainer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> submodule that defines it
_LAZY = {
    "DreamBoothConfig": "hfvision.training.dreambooth.config",
    "parse_dreambooth_args": "hfvision.training.dreambooth.config",
    "DreamBoothTrainer": "hfvision.training.dreambooth.trainer",
    "DreamBoothResult": "hfvision.training.dreambooth.trainer",
    "TrainingDivergedError": "hfvision.training.dreambooth.runtime",
    "ImageClassificationTrainer": "hfvision.training.classification",
    "ImageClassificationConfig": "hfvision.training.classification",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfvision.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from .classification import ImageClassificationConfig, ImageClassificationTrainer  # noqa: F401
    from .dreambooth.config import DreamBoothConfig, parse_dreambooth_args  # noqa: F401
    from .dreambooth.runtime import TrainingDivergedError  # noqa: F401
    from .dreambooth.trainer import DreamBoothResult, DreamBoothTrainer  # noqa: F401
