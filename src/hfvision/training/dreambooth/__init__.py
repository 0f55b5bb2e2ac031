"""DreamBooth fine-tuning of Stable Diffusion (SD 1.x, 2.x, XL; full or LoRA) on Accelerate.

>>> from hfvision.training.dreambooth import DreamBoothConfig, DreamBoothTrainer
"""

from .args import parse_dreambooth_args
from .config import DreamBoothConfig
from .runtime import TrainingDivergedError
from .trainer import DreamBoothResult, DreamBoothTrainer

__all__ = [
    "DreamBoothConfig",
    "DreamBoothResult",
    "DreamBoothTrainer",
    "TrainingDivergedError",
    "parse_dreambooth_args",
]
