#!/usr/bin/env python
"""DreamBooth LoRA on Flux.1 (dev or schnell): drop-in for diffusers\' `train_dreambooth_lora_flux.py`.

The same command line works after changing the script name; the defaults are diffusers' (LoRA on, rank 4, learning rate
1e-4, batch 4, one epoch unless `--max_train_steps` is given, validation every 50 epochs, 512-token T5 prompts,
guidance embedding 3.5 on Flux.1-dev, uniform timesteps). The transformer's attention projections get adapters
(`--lora_layers` picks others); `--train_text_encoder` adds LoRA on the CLIP encoder (T5 stays frozen). The result is
diffusers' `pytorch_lora_weights.safetensors`: `FluxPipeline.from_pretrained(base).load_lora_weights(output_dir)`.
Every option of `hfvision.training.DreamBoothConfig` is a flag too (`--with_prior_preservation`, `--weighting_scheme`,
`--cache_latents`, `--pre_compute_text_embeddings`, `--session`, `--config run.yaml`, ...).

    accelerate launch examples/train_dreambooth_lora_flux.py \
        --pretrained_model_name_or_path black-forest-labs/FLUX.1-dev --instance_data_dir dog/ \
        --instance_prompt "a photo of sks dog" --resolution 1024 --train_batch_size 1 --gradient_accumulation_steps 4 \
        --mixed_precision bf16 --gradient_checkpointing --max_train_steps 500 \
        --validation_prompt "a photo of sks dog in a bucket" --output_dir lora-flux-dog
"""

from __future__ import annotations

import sys

from hfvision.training.dreambooth import scripts

# diffusers' train_dreambooth_lora_flux.py defaults, where they differ from DreamBoothConfig's
DEFAULTS = dict(scripts.FLOW_MATCHING_DEFAULTS, use_lora=True)


def main(argv: list[str] | None = None) -> int:
    return scripts.run_script(DEFAULTS, scripts.FLOW_MATCHING_TEXT_ENCODER_DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
