#!/usr/bin/env python
"""DreamBooth a Stable Diffusion model on a few photos of a subject (full fine-tune; LoRA with `--use_lora`).

Drop-in for diffusers' `examples/dreambooth/train_dreambooth.py`: every option is a field of
`hfvision.training.DreamBoothConfig`, flag names follow diffusers' script, and its command lines work here (LoRA
runs: `train_dreambooth_lora.py` / `train_dreambooth_lora_sdxl.py`, drop-ins for diffusers' scripts of those
names). A YAML file can set any option (`--config run.yaml`); flags given beside it win.

    accelerate launch examples/train_dreambooth.py --config examples/configs/tiny.yaml
    accelerate launch examples/train_dreambooth.py \
        --pretrained_model_name_or_path sd15 --instance_data_dir photos/ \
        --instance_prompt "a photo of sks dog" --with_prior_preservation --class_prompt "a photo of dog" \
        --train_text_encoder --text_encoder_steps 350 --max_train_steps 1200 --learning_rate 2e-6 \
        --validation_prompt "a photo of sks dog on the moon" --push_to_hub --hub_model_id me/sks-dog

Works the same under `accelerate launch --num_processes N` (GPUs, or `--cpu` with gloo).
"""

from __future__ import annotations

import sys

from hfvision.training.dreambooth import scripts


def main(argv: list[str] | None = None) -> int:
    return scripts.run_script(argv=argv, description=__doc__)  # DreamBoothConfig's defaults are diffusers'


if __name__ == "__main__":
    sys.exit(main())
