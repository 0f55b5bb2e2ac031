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

import sys

from hfvision.training.dreambooth import scripts

# diffusers' train_dreambooth_lora_sdxl.py defaults, where they differ from DreamBoothConfig's
DEFAULTS = dict(use_lora=True, learning_rate=1e-4, resolution=1024, num_train_epochs=1, validation_epochs=50)
TEXT_ENCODER_DEFAULTS = dict(text_encoder_lr=5e-6, adam_weight_decay_text_encoder=1e-3)


def main(argv: list[str] | None = None) -> int:
    return scripts.run_script(DEFAULTS, TEXT_ENCODER_DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
