"""Optimizer and learning-rate schedule: group 0 is the denoiser (UNet or transformer, or its LoRA), group 1 the
text encoder(s).

The two-stage text-encoder schedule empties group 1 and deletes its Adam state when the stage ends. The group
itself stays (empty), so the optimizer and scheduler state dicts keep the same shape before and after the switch,
and a resumed run rebuilds exactly that shape before loading them.
"""

from __future__ import annotations

import torch

from ...utils.import_utils import is_available
from ...utils.logging import get_logger
from .config import DreamBoothConfig

logger = get_logger(__name__)


def build_optimizer(config: DreamBoothConfig, denoiser_params: list, text_params: list, scale: float = 1.0):
    """AdamW (or bitsandbytes' AdamW8bit) over one or two parameter groups."""
    if config.use_8bit_adam:
        if not is_available("bitsandbytes"):
            raise ImportError(
                "use_8bit_adam needs the 'bitsandbytes' package (GPU only), which is not installed; "
                "run: pip install bitsandbytes, or drop --use_8bit_adam"
            )
        import bitsandbytes as bnb

        optimizer_class = bnb.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    groups = [{"params": denoiser_params, "lr": config.learning_rate * scale}]
    if config.train_text_encoder:
        groups.append({"params": text_params, "lr": config.text_encoder_learning_rate * scale})
        if config.adam_weight_decay_text_encoder is not None:
            groups[1]["weight_decay"] = config.adam_weight_decay_text_encoder
    return optimizer_class(
        groups,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )


def build_lr_scheduler(config: DreamBoothConfig, optimizer, num_processes: int):
    """diffusers' ``get_scheduler``; counted in scheduler steps, which accelerate takes once per process."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * num_processes,
        num_training_steps=config.max_train_steps * num_processes,
        num_cycles=config.lr_num_cycles,
        power=config.lr_power,
    )


def drop_param_group(optimizer, index: int) -> int:
    """Remove every parameter of group ``index`` (and its optimizer state); returns how many were dropped."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    group = inner.param_groups[index]
    params = group["params"]
    for param in params:
        inner.state.pop(param, None)
        param.grad = None
    group["params"] = []
    return len(params)
