#!/usr/bin/env python
"""DreamBooth full fine-tune of Stable Diffusion 3 / 3.5: drop-in for diffusers\' `train_dreambooth_sd3.py`.

The same command line works after changing the script name; the defaults are diffusers' (learning rate 1e-4, batch 4,
one epoch unless `--max_train_steps` is given, validation every 50 epochs, 77-token T5 prompts, logit-normal timesteps,
preconditioned outputs). The transformer is trained (and both CLIP encoders with `--train_text_encoder`); the output
folder is a stock `StableDiffusion3Pipeline` (`DiffusionPipeline.from_pretrained(output_dir)`). Every option of
`hfvision.training.DreamBoothConfig` is a flag too (`--with_prior_preservation`, `--weighting_scheme`,
`--cache_latents`, `--pre_compute_text_embeddings`, `--session`, `--config run.yaml`, ...).

    accelerate launch examples/train_dreambooth_sd3.py \
        --pretrained_model_name_or_path stabilityai/stable-diffusion-3.5-medium --instance_data_dir dog/ \
        --instance_prompt "a photo of sks dog" --resolution 1024 --train_batch_size 1 --gradient_accumulation_steps 4 \
        --mixed_precision bf16 --gradient_checkpointing --max_train_steps 500 \
        --validation_prompt "a photo of sks dog in a bucket" --output_dir sd3-dog
"""

from __future__ import annotations

import sys

from hfvision.training.dreambooth import scripts

# diffusers' train_dreambooth_sd3.py defaults, where they differ from DreamBoothConfig's
DEFAULTS = dict(scripts.FLOW_MATCHING_DEFAULTS, precondition_outputs=True)


def main(argv: list[str] | None = None) -> int:
    return scripts.run_script(DEFAULTS, scripts.FLOW_MATCHING_TEXT_ENCODER_DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
