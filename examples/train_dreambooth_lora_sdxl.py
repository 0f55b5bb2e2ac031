#!/usr/bin/env python
"""DreamBooth LoRA on SDXL: drop-in for diffusers' `examples/dreambooth/train_dreambooth_lora_sdxl.py`.

The same command line works after changing the script name; LoRA is on, and the defaults are diffusers' (1024 px,
learning rate 1e-4, rank 4, one epoch unless `--max_train_steps` is given, validation every 50 epochs; with
`--train_text_encoder` the text encoders train at 5e-6 with weight decay 1e-3). `--output_kohya_format` also writes
`pytorch_lora_weights_kohya.safetensors` for AUTOMATIC1111 / ComfyUI / kohya tools. Every option of
`hfvision.training.DreamBoothConfig` is a flag too (`--use_dora`, `--snr_gamma`, `--session`, `--config`, ...).

    accelerate launch examples/train_dreambooth_lora_sdxl.py \
        --pretrained_model_name_or_path stabilityai/stable-diffusion-xl-base-1.0 --instance_data_dir dog/ \
        --instance_prompt "a photo of sks dog" --mixed_precision fp16 --gradient_checkpointing \
        --max_train_steps 500 --validation_prompt "a photo of sks dog in a bucket" --output_kohya_format \
        --output_dir lora-trained-xl
"""

from __future__ import annotations

import logging
import sys

from hfvision.training import DreamBoothTrainer
from hfvision.training.dreambooth.args import parse_dreambooth_args

# diffusers' train_dreambooth_lora_sdxl.py defaults, where they differ from DreamBoothConfig's
SDXL_LORA_DEFAULTS = dict(use_lora=True, learning_rate=1e-4, resolution=1024, num_train_epochs=1, validation_epochs=50)
TEXT_ENCODER_DEFAULTS = dict(text_encoder_lr=5e-6, adam_weight_decay_text_encoder=1e-3)


def main(argv: list[str] | None = None) -> int:
    config = parse_dreambooth_args(
        argv,
        prog="train_dreambooth_lora_sdxl.py",
        description="DreamBooth LoRA (SDXL).",
        text_encoder_defaults=TEXT_ENCODER_DEFAULTS,
        **SDXL_LORA_DEFAULTS,
    )
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    result = DreamBoothTrainer(config).train()  # pushes to the Hub at the end when --push_to_hub is set
    print(f"done: {result.global_step} steps, last loss {result.final_loss}, LoRA in {result.lora_weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
