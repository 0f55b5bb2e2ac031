"""Training: DreamBooth for Stable Diffusion (:mod:`.dreambooth`) and image-classifier fine-tuning
(:mod:`.classification`). Names load lazily, so ``import hfvision.training`` does not import torch.

>>> from hfvision.training import DreamBoothConfig, DreamBoothTrainer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfvision.utils.lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "DreamBoothConfig": "hfvision.training.dreambooth.config",
    "parse_dreambooth_args": "hfvision.training.dreambooth.args",
    "DreamBoothTrainer": "hfvision.training.dreambooth.trainer",
    "DreamBoothResult": "hfvision.training.dreambooth.trainer",
    "TrainingDivergedError": "hfvision.training.dreambooth.runtime",
    "ImageClassificationTrainer": "hfvision.training.classification",
    "ImageClassificationConfig": "hfvision.training.classification",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .classification import ImageClassificationConfig, ImageClassificationTrainer  # noqa: F401
    from .dreambooth.args import parse_dreambooth_args  # noqa: F401
    from .dreambooth.config import DreamBoothConfig  # noqa: F401
    from .dreambooth.runtime import TrainingDivergedError  # noqa: F401
    from .dreambooth.trainer import DreamBoothResult, DreamBoothTrainer  # noqa: F401
