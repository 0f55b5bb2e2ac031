"""Run-time checks and small helpers shared by the trainer's steps (no model code)."""

from __future__ import annotations

import gc
import os
import zlib

import numpy as np

from ...utils.import_utils import require
from .config import DreamBoothConfig


class TrainingDivergedError(RuntimeError):
    """The loss stayed non-finite for ``max_nan_steps`` consecutive steps; the last good checkpoint is kept."""


def check_runtime(config: DreamBoothConfig) -> None:
    """Environment checks that need no model: precision vs device, optional packages."""
    import torch

    precision = config.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    on_cpu = not torch.cuda.is_available() or use_cpu()
    if precision == "fp16" and on_cpu:
        raise ValueError("mixed_precision='fp16' needs a GPU; on CPU use --mixed_precision bf16 or no")
    if config.report_to in ("tensorboard", "all"):
        require("tensorboard", "report_to=tensorboard")
    if config.report_to == "wandb":
        require("wandb", "report_to=wandb")
    if config.use_8bit_adam:
        require("bitsandbytes", "use_8bit_adam")


def use_cpu() -> bool:
    """Run on CPU: asked for (``accelerate launch --cpu``), or several processes were started (torchrun /
    ``accelerate launch --multi_gpu``) on a machine without a GPU, where accelerate must use gloo on CPU instead of
    silently running each process alone."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def derived_seed(seed: int, label: str, index: int = 0) -> int:
    """A well-mixed seed for one purpose (``label``) and process (``index``), from the run's seed."""
    words = np.random.SeedSequence([seed, zlib.crc32(label.encode()), index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def free_memory() -> None:
    """Collect garbage and return cached accelerator memory (e.g. after class-image generation)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
