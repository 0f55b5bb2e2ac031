"""The body of the DreamBooth example scripts (``examples/train_dreambooth*.py``): parse, train, say where the result is.

Each script is its docstring, the defaults in which diffusers' script of that name differs from
[`DreamBoothConfig`], and one call of [`run_script`]; the scripts run the same as ``python examples/X.py --flags``
and under ``accelerate launch``.
"""

from __future__ import annotations

import logging

from ...utils.logging import get_logger
from .args import parse_dreambooth_args
from .trainer import DreamBoothTrainer

logger = get_logger(__name__)

#: defaults that diffusers' Flux and SD3 DreamBooth scripts (full and LoRA) share, where they differ from
#: [`DreamBoothConfig`]'s; the family-dependent ones (T5 prompt length, timestep weighting, guidance) are filled in by
#: the trainer from the base model
FLOW_MATCHING_DEFAULTS = dict(
    learning_rate=1e-4, train_batch_size=4, num_train_epochs=1, validation_epochs=50, lr_warmup_steps=500
)
#: and their text-encoder learning rate, applied with ``--train_text_encoder``
FLOW_MATCHING_TEXT_ENCODER_DEFAULTS = dict(text_encoder_lr=5e-6)


def run_script(
    defaults: dict | None = None,
    text_encoder_defaults: dict | None = None,
    argv: list[str] | None = None,
    description: str | None = None,
) -> int:
    """Parse a DreamBooth script's command line, train (and push with ``--push_to_hub``), log where the result is.

    Args:
        defaults (`dict`, *optional*):
            The script's own defaults, below flags and ``--config`` (e.g. ``use_lora=True``).
        text_encoder_defaults (`dict`, *optional*):
            Defaults that apply only with ``--train_text_encoder`` (diffusers' scripts' text-encoder settings).
        argv (`list[str]`, *optional*, defaults to `sys.argv[1:]`):
            The command line.
        description (`str`, *optional*):
            The script's docstring; its first line is the ``--help`` description.

    Returns:
        `int`: the exit status, 0.

    >>> run_script({"use_lora": True}, argv=["--config", "examples/configs/tiny.yaml"])  # doctest: +SKIP
    """
    description = description.strip().splitlines()[0] if description else None
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    config = parse_dreambooth_args(
        argv, description=description, text_encoder_defaults=text_encoder_defaults, **(defaults or {})
    )
    result = DreamBoothTrainer(config).train()  # pushes to the Hub at the end when --push_to_hub is set
    where = f"LoRA in {result.lora_weights}" if result.lora_weights else f"output in {result.output_dir}"
    logger.info("done: %d steps, last loss %s, %s", result.global_step, result.final_loss, where)
    return 0
