#!/usr/bin/env python
"""DreamBooth LoRA on Stable Diffusion 1.x / 2.x: drop-in for diffusers' `examples/dreambooth/train_dreambooth_lora.py`.

The same command line works after changing the script name; LoRA is on, and the defaults are diffusers' (learning
rate 5e-4, rank 4, one epoch unless `--max_train_steps` is given, validation every 50 epochs). The result is
diffusers' `pytorch_lora_weights.safetensors` (`pipe.load_lora_weights(output_dir)`), with `--output_kohya_format`
also in kohya/AUTOMATIC1111 key names. Every option of `hfvision.training.DreamBoothConfig` is a flag too
(`--with_prior_preservation`, `--use_dora`, `--text_encoder_lr`, `--snr_gamma`, `--session`, `--config run.yaml`, ...).

    accelerate launch examples/train_dreambooth_lora.py \
        --pretrained_model_name_or_path stable-diffusion-v1-5/stable-diffusion-v1-5 --instance_data_dir dog/ \
        --instance_prompt "a photo of sks dog" --resolution 512 --train_batch_size 1 --learning_rate 1e-4 \
        --max_train_steps 500 --validation_prompt "a photo of sks dog in a bucket" --validation_epochs 50 \
        --output_dir lora-dog --push_to_hub
"""

from __future__ import annotations

import sys

from hfvision.training.dreambooth import scripts

# diffusers' train_dreambooth_lora.py defaults, where they differ from DreamBoothConfig's
DEFAULTS = dict(use_lora=True, learning_rate=5e-4, num_train_epochs=1, validation_epochs=50)


def main(argv: list[str] | None = None) -> int:
    return scripts.run_script(DEFAULTS, argv=argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
