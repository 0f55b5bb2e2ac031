"""Validation of [`DreamBoothConfig`]: run by its ``__post_init__``, before anything is loaded.

Every error is one line quoting the bad value and saying what to do instead. No torch, no diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import constants

if TYPE_CHECKING:
    from .config import DreamBoothConfig


def normalise_options(config: DreamBoothConfig) -> None:
    """Fill the defaults that depend on other options (in place)."""
    if isinstance(config.validation_prompt, str):
        config.validation_prompt = [config.validation_prompt]
    if config.validation_prompt is not None:
        config.validation_prompt = list(config.validation_prompt)
    if config.max_grad_norm == 0:
        config.max_grad_norm = None
    if config.max_train_steps is None and config.num_train_epochs is None:
        config.max_train_steps = constants.DEFAULT_MAX_TRAIN_STEPS
    if config.use_lora:
        config.rank = 4 if config.rank is None else config.rank
        config.lora_alpha = config.rank if config.lora_alpha is None else config.lora_alpha
        config.lora_dropout = 0.0 if config.lora_dropout is None else config.lora_dropout


def validate_options(config: DreamBoothConfig) -> None:
    """Raise a one-line ``ValueError`` naming the first bad option and the fix."""

    def fail(message: str) -> None:
        raise ValueError(message)

    if not config.pretrained_model_name_or_path:
        fail("pretrained_model_name_or_path is required: a Hub id, a local folder, a .safetensors file or sd15")
    if not config.instance_data_dir and not config.session and not config.hub_session and not config.concepts_list:
        fail("instance_data_dir is required (a folder of subject photos), or pass --session NAME")
    if not isinstance(config.resolution, int) or config.resolution <= 0 or config.resolution % 8:
        lo, hi = max(8, config.resolution // 8 * 8), (config.resolution // 8 + 1) * 8
        fail(f"resolution={config.resolution!r} must be a positive multiple of 8; try {hi} or {lo}")
    for name in (
        "train_batch_size",
        "max_train_steps",
        "gradient_accumulation_steps",
        "num_class_images",
        "sample_batch_size",
        "class_inference_steps",
        "checkpointing_steps",
        "validation_steps",
        "num_validation_images",
        "validation_inference_steps",
        "max_nan_steps",
        "num_train_epochs",
        "validation_epochs",
    ):
        value = getattr(config, name)
        if value is None and name in ("max_train_steps", "num_train_epochs", "validation_epochs"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(f"{name}={value!r} must be an integer >= 1")
    for name in ("lr_warmup_steps", "dataloader_num_workers"):
        if getattr(config, name) < 0:
            fail(f"{name}={getattr(config, name)!r} must be >= 0")
    if not config.learning_rate > 0:
        fail(f"learning_rate={config.learning_rate!r} must be > 0 (typical: 5e-6 full, 1e-4 LoRA)")
    if config.prior_loss_weight < 0:
        fail(f"prior_loss_weight={config.prior_loss_weight!r} must be >= 0")
    if config.lr_scheduler not in constants.LR_SCHEDULERS:
        fail(f"lr_scheduler={config.lr_scheduler!r} is not one of {', '.join(constants.LR_SCHEDULERS)}")
    if config.mixed_precision not in (None, *constants.MIXED_PRECISION):
        fail(f"mixed_precision={config.mixed_precision!r} must be one of no, fp16, bf16")
    if config.prior_generation_precision not in (None, "fp32", "fp16", "bf16"):
        fail(f"prior_generation_precision={config.prior_generation_precision!r} must be fp32, fp16 or bf16")
    if config.report_to not in constants.REPORT_TO:
        fail(f"report_to={config.report_to!r} must be one of {', '.join(constants.REPORT_TO)}")
    if config.snr_gamma is not None and not config.snr_gamma > 0:
        fail(f"snr_gamma={config.snr_gamma!r} must be > 0 (5.0 is typical), or leave it unset")
    if config.noise_offset < 0:
        fail(f"noise_offset={config.noise_offset!r} must be >= 0 (0.1 is typical)")
    if config.max_grad_norm is not None and config.max_grad_norm < 0:
        fail(f"max_grad_norm={config.max_grad_norm!r} must be > 0, or 0 to disable clipping")
    if config.checkpoints_total_limit is not None and config.checkpoints_total_limit < 1:
        fail(f"checkpoints_total_limit={config.checkpoints_total_limit!r} must be >= 1, or unset for no limit")
    if "{token}" in config.instance_prompt and not config.instance_token.strip():
        fail("instance_token is empty but instance_prompt uses {token}; set e.g. --instance_token sks")

    # Prior preservation
    if config.with_prior_preservation and not config.class_prompt and not config.concepts_list:
        fail("with_prior_preservation needs --class_prompt, e.g. 'a photo of dog'")
    if not config.with_prior_preservation:
        for name in ("class_prompt", "class_data_dir"):
            if getattr(config, name):
                fail(
                    f"{name}={getattr(config, name)!r} is set but prior preservation is off; "
                    f"add --with_prior_preservation or drop --{name}"
                )

    validate_data_and_quality_options(config)

    # Text encoder
    if config.text_encoder_steps is not None:
        if not config.train_text_encoder:
            fail(f"text_encoder_steps={config.text_encoder_steps} needs --train_text_encoder")
        if config.text_encoder_steps < 1:
            fail(f"text_encoder_steps={config.text_encoder_steps!r} must be >= 1")
        if config.max_train_steps is not None and config.text_encoder_steps > config.max_train_steps:
            fail(
                f"text_encoder_steps={config.text_encoder_steps} exceeds max_train_steps={config.max_train_steps}; "
                "lower it, or drop it to train the text encoder for the whole run"
            )
    if config.adam_weight_decay_text_encoder is not None and config.adam_weight_decay_text_encoder < 0:
        fail(f"adam_weight_decay_text_encoder={config.adam_weight_decay_text_encoder!r} must be >= 0")
    if config.text_encoder_lr is not None:
        if not config.train_text_encoder:
            fail(f"text_encoder_lr={config.text_encoder_lr} needs --train_text_encoder")
        if not config.text_encoder_lr > 0:
            fail(f"text_encoder_lr={config.text_encoder_lr!r} must be > 0")
    if config.pre_compute_text_embeddings and config.train_text_encoder and config.text_encoder_steps is None:
        fail(
            "pre_compute_text_embeddings needs a frozen text encoder, but train_text_encoder trains it for the "
            "whole run; drop one, or set --text_encoder_steps N (embeddings are cached after step N)"
        )

    # LoRA
    if not config.use_lora:
        for name in ("rank", "lora_alpha", "lora_dropout"):
            if getattr(config, name) is not None:
                fail(f"{name}={getattr(config, name)!r} only applies with --use_lora; add it or drop --{name}")
        for name in ("merge_lora", "use_dora", "output_kohya_format"):
            if getattr(config, name):
                fail(f"{name} only applies with --use_lora (examples/train_dreambooth_lora.py turns it on)")
    else:
        if not isinstance(config.rank, int) or config.rank < 1:
            fail(f"rank={config.rank!r} must be an integer >= 1 (4-32 is typical)")
        if config.lora_alpha < 1:
            fail(f"lora_alpha={config.lora_alpha!r} must be >= 1")
        if not 0 <= config.lora_dropout < 1:
            fail(f"lora_dropout={config.lora_dropout!r} must be in [0, 1)")

    if config.overwrite_output_dir and config.resume_from_checkpoint:
        fail("overwrite_output_dir starts a new run and resume_from_checkpoint continues one; pass only one")
    if config.cache_latents and config.random_flip:
        fail("cache_latents keeps one latent per image, so it cannot be combined with random_flip; drop one")
    if config.push_to_hub and config.hub_model_id is not None and config.hub_model_id.count("/") > 1:
        fail(f"hub_model_id={config.hub_model_id!r} must look like 'name' or 'user/name'")
    if config.hub_session is not None and config.hub_session.count("/") != 1:
        fail(f"hub_session={config.hub_session!r} must look like 'user/repo'")
    validate_flow_options(config)


def validate_flow_options(config: DreamBoothConfig) -> None:
    """Flow-matching options that need no base model (the family checks run in the trainer, before loading)."""
    if config.weighting_scheme is not None and config.weighting_scheme not in constants.FLOW_WEIGHTING_SCHEMES:
        schemes = ", ".join(constants.FLOW_WEIGHTING_SCHEMES)
        raise ValueError(f"weighting_scheme={config.weighting_scheme!r} is not one of {schemes}")
    if not config.logit_std > 0:
        raise ValueError(f"logit_std={config.logit_std!r} must be > 0 (diffusers' default is 1.0)")
    if not config.use_lora:
        for name in ("lora_layers", "lora_blocks"):
            if getattr(config, name):
                raise ValueError(f"{name}={getattr(config, name)!r} only applies with --use_lora; drop --{name}")
    if config.quantize_base is not None:
        if config.quantize_base not in constants.QUANTIZE_BASE:
            raise ValueError(
                f"quantize_base={config.quantize_base!r} must be one of {', '.join(constants.QUANTIZE_BASE)}"
            )
        if not config.use_lora:
            raise ValueError("quantize_base trains LoRA adapters over a frozen quantised base: add --use_lora")
        if config.merge_lora:
            raise ValueError(
                "merge_lora would fuse into the quantised base (rounding errors); drop --merge_lora and fuse into "
                "the full-precision base: pipe.load_lora_weights(out); pipe.fuse_lora()"
            )
    if config.lora_blocks:
        try:
            [int(b) for b in config.lora_blocks.split(",")]
        except ValueError:
            raise ValueError(
                f"lora_blocks={config.lora_blocks!r} must be comma-separated block indices, e.g. '12,30'"
            ) from None


def validate_data_and_quality_options(config: DreamBoothConfig) -> None:
    """Aspect-ratio buckets, several subjects, repeats, caption dropout and quality-metric options."""
    from .concepts import check_caption_dropout

    check_caption_dropout(config.caption_dropout)
    if isinstance(config.repeats, bool) or not isinstance(config.repeats, int) or config.repeats < 1:
        raise ValueError(f"repeats={config.repeats!r} must be an integer >= 1")
    if config.aspect_ratio_buckets and not config.use_aspect_ratio_buckets:
        raise ValueError("aspect_ratio_buckets needs --use_aspect_ratio_buckets (add it, or drop the list)")
    if config.use_aspect_ratio_buckets:
        from .buckets import parse_buckets

        if config.aspect_ratio_buckets:
            parse_buckets(config.aspect_ratio_buckets)
        else:
            config.bucket_settings()  # raises on bad kohya parameters
        if config.cache_latents and config.random_flip:
            raise ValueError("cache_latents keeps one latent per image and bucket; drop --random_flip")
    if config.concepts_list and config.instance_data_dir:
        raise ValueError("pass --concepts_list or --instance_data_dir, not both (the list names each folder)")
    if config.concepts_list and (config.class_prompt or config.class_data_dir):
        raise ValueError("with --concepts_list, set class_prompt / class_data_dir per subject in the list")
    if config.select_best_by is not None:
        if config.select_best_by not in constants.QUALITY_METRICS:
            raise ValueError(
                f"select_best_by={config.select_best_by!r} must be one of {', '.join(constants.QUALITY_METRICS)}"
            )
        if not config.quality_metrics or not config.validation_prompt:
            raise ValueError("select_best_by needs --quality_metrics and --validation_prompt (it ranks their scores)")
        if config.select_best_by == "drift" and not (config.class_prompt or config.concepts_list):
            raise ValueError(
                "select_best_by='drift' needs class prompts: add --with_prior_preservation --class_prompt"
            )
    if config.quality_metrics and not config.validation_prompt:
        raise ValueError("quality_metrics scores the validation images: add --validation_prompt")
