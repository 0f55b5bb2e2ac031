"""DreamBooth fine-tuning of Stable Diffusion (SD 1.x, 2.x, XL; full or LoRA) on Accelerate.

Names load lazily, so parsing a command line (``.args``, ``.config``) does not import torch.

>>> from hfvision.training.dreambooth import DreamBoothConfig, DreamBoothTrainer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfvision.utils.lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "DreamBoothConfig": "hfvision.training.dreambooth.config",
    "DreamBoothResult": "hfvision.training.dreambooth.trainer",
    "DreamBoothTrainer": "hfvision.training.dreambooth.trainer",
    "TrainingDivergedError": "hfvision.training.dreambooth.runtime",
    "parse_dreambooth_args": "hfvision.training.dreambooth.args",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .args import parse_dreambooth_args  # noqa: F401
    from .config import DreamBoothConfig  # noqa: F401
    from .runtime import TrainingDivergedError  # noqa: F401
    from .trainer import DreamBoothResult, DreamBoothTrainer  # noqa: F401
