"""`DreamBoothConfig`: the single source of every DreamBooth option (Python, YAML and command-line flags).

Flag names follow diffusers' ``examples/dreambooth/train_dreambooth.py`` wherever the option is the same, so its
users can switch by changing the script name. Flags are generated from the dataclass with transformers'
``HfArgumentParser``; ``--config run.yaml`` sets any option and flags given beside it win.

This module imports neither torch nor diffusers: ``hfvision --help`` and config validation stay fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...evaluation import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL  # plain strings (the package loads lazily)

# The names diffusers.optimization.get_scheduler accepts (tests check this list against diffusers' SchedulerType).
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "piecewise_constant",
)
REPORT_TO = ("tensorboard", "wandb", "all", "none")
DEFAULT_OUTPUT_DIR = "dreambooth-model"
DEFAULT_MAX_TRAIN_STEPS = 400
MIXED_PRECISION = ("no", "fp16", "bf16")
# flow_matching.WEIGHTING_SCHEMES, repeated here so that this module stays free of torch (a test keeps them equal)
FLOW_WEIGHTING_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")

# Options that decide which samples, noise and parameters a run uses: a resumed run must keep them unchanged.
RESUME_INVARIANT_FIELDS = (
    "pretrained_model_name_or_path",
    "revision",
    "variant",
    "resolution",
    "center_crop",
    "random_flip",
    "train_batch_size",
    "gradient_accumulation_steps",
    "with_prior_preservation",
    "num_class_images",
    "train_text_encoder",
    "text_encoder_steps",
    "use_lora",
    "rank",
    "lora_alpha",
    "use_dora",
    "seed",
)
# What makes two runs "the same run" (with the resume-invariant options): an output folder or checkpoint whose run
# identity differs belongs to another run, and is never overwritten or resumed from.
# Data options of aspect-ratio buckets, several subjects, repeats and caption dropout: also resume-invariant. At
# their defaults they are left out of the run identity, so checkpoints written before they existed still resume.
DATA_INVARIANT_DEFAULTS = {
    "use_aspect_ratio_buckets": False,
    "aspect_ratio_buckets": None,
    "bucket_reso_steps": 64,
    "min_bucket_reso": None,
    "max_bucket_reso": None,
    "bucket_no_upscale": False,
    "caption_dropout": 0.0,
    "repeats": 1,
    "concepts_list": None,
}
# Flux/SD3 options that change the training math (timestep density and loss weights, guidance embedding, T5 prompt
# length, the regression target, which modules carry adapters, the quantised base): resume-invariant too, and left
# out of the run identity at their defaults (SD runs, and checkpoints written before they were recorded).
FLOW_INVARIANT_DEFAULTS = {
    "weighting_scheme": None,
    "logit_mean": 0.0,
    "logit_std": 1.0,
    "mode_scale": 1.29,
    "guidance_scale": None,
    "max_sequence_length": None,
    "precondition_outputs": False,
    "lora_layers": None,
    "lora_blocks": None,
    "quantize_base": None,
}
RESUME_INVARIANT_FIELDS = (*RESUME_INVARIANT_FIELDS, *DATA_INVARIANT_DEFAULTS, *FLOW_INVARIANT_DEFAULTS)
RUN_IDENTITY_FIELDS = (*RESUME_INVARIANT_FIELDS, "instance_token", "instance_prompt", "class_prompt")
QUALITY_METRICS = ("clip_i", "dino", "clip_t", "drift")
# --quantize_base choices (training/dreambooth/quantization.py: QUANTIZATION_METHODS, kept equal by a test)
QUANTIZE_BASE = ("nf4", "int8")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class DreamBoothConfig:
    """Every option of a DreamBooth run, validated on construction.

    Errors quote the bad value and say what to do instead. Load from YAML with [`DreamBoothConfig.from_yaml`],
    from the command line with [`parse_dreambooth_args`]; [`DreamBoothConfig.to_yaml`] writes a file that
    reproduces the run.

    Example:

    ```py
    >>> from hfvision.training import DreamBoothConfig
    >>> config = DreamBoothConfig(
    ...     pretrained_model_name_or_path="sd15",
    ...     instance_data_dir="photos/",
    ...     instance_prompt="a photo of sks dog",
    ...     class_prompt="a photo of dog",
    ...     with_prior_preservation=True,
    ... )
    >>> config.resolution
    512
    ```
    """

    # --- Base model -------------------------------------------------------------------------------------------
    pretrained_model_name_or_path: str | None = field(
        default=None,
        metadata=_help(
            "Base model: a Hub id (runwayml/stable-diffusion-v1-5), a local diffusers folder, a single "
            ".safetensors file, or a registry key (sd15, sd21, sdxl; see `hfvision.models.list_base_models`)."
        ),
    )
    revision: str | None = field(default=None, metadata=_help("Hub revision (branch, tag or commit) of the base."))
    variant: str | None = field(default=None, metadata=_help("Weights variant of the base, e.g. fp16."))
    force_resolution: bool = field(
        default=False,
        metadata=_help("Train at a resolution the base-model registry advises against (e.g. 768 on sd15)."),
    )

    # --- Instance data ----------------------------------------------------------------------------------------
    instance_data_dir: str | None = field(default=None, metadata=_help("Folder of subject photos (3-30)."))
    instance_token: str = field(
        default="sks", metadata=_help("Rare identifier for the subject; replaces {token} in prompts.")
    )
    instance_prompt: str = field(
        default="a photo of {token}",
        metadata=_help("Prompt for the subject photos, e.g. 'a photo of sks dog'. {token} is instance_token."),
    )
    class_noun: str | None = field(
        default=None,
        metadata=_help(
            "The subject's class (e.g. dog), saved with instance_token in model_index.json for {class} in prompts. "
            "Default: the word after the token in instance_prompt."
        ),
    )
    caption_from_filename: bool = field(
        default=False,
        metadata=_help("Per-image captions from file names ('sks dog (3).jpg' -> 'sks dog') when no .txt exists."),
    )
    resolution: int = field(default=512, metadata=_help("Training resolution (square); must be divisible by 8."))
    center_crop: bool = field(default=False, metadata=_help("Centre-crop instead of a random crop."))
    random_flip: bool = field(default=False, metadata=_help("Randomly flip images horizontally."))

    # --- Prior preservation -----------------------------------------------------------------------------------
    with_prior_preservation: bool = field(
        default=False, metadata=_help("Add the prior-preservation loss on class images (same batch).")
    )
    class_data_dir: str | None = field(
        default=None,
        metadata=_help(
            "Folder of class images. Missing ones (up to num_class_images) are generated there with the base "
            "model. Default: a shared cache ($HFVISION_CACHE/class_images) reused across subjects."
        ),
    )
    class_prompt: str | None = field(default=None, metadata=_help("Prompt of the class, e.g. 'a photo of dog'."))
    prior_loss_weight: float = field(default=1.0, metadata=_help("Weight of the prior-preservation loss."))
    num_class_images: int = field(default=100, metadata=_help("Class images to use (generated when missing)."))
    sample_batch_size: int = field(default=4, metadata=_help("Batch size of class-image generation."))
    class_inference_steps: int = field(default=30, metadata=_help("Denoising steps per generated class image."))
    prior_generation_precision: Literal["fp32", "fp16", "bf16"] | None = field(
        default=None, metadata=_help("Precision of class-image generation. Default: fp16 on GPU, fp32 on CPU.")
    )

    # --- Optimisation -----------------------------------------------------------------------------------------
    train_batch_size: int = field(default=1, metadata=_help("Instance images per device per step."))
    max_train_steps: int | None = field(
        default=None, metadata=_help("Optimizer steps to train for (default 400; wins over num_train_epochs).")
    )
    num_train_epochs: int | None = field(
        default=None, metadata=_help("Train for this many passes over the images when max_train_steps is unset.")
    )
    learning_rate: float = field(default=5e-6, metadata=_help("Learning rate of the UNet (or its LoRA)."))
    scale_lr: bool = field(
        default=False, metadata=_help("Multiply the learning rates by batch size x accumulation x processes.")
    )
    lr_scheduler: Literal[LR_SCHEDULERS] = field(  # type: ignore[valid-type]
        default="constant", metadata=_help("Learning-rate schedule (diffusers.optimization.get_scheduler).")
    )
    lr_warmup_steps: int = field(default=0, metadata=_help("Warm-up steps of the schedule."))
    lr_num_cycles: int = field(default=1, metadata=_help("Cycles of cosine_with_restarts."))
    lr_power: float = field(default=1.0, metadata=_help("Power of the polynomial schedule."))
    adam_beta1: float = field(default=0.9, metadata=_help("Adam beta1."))
    adam_beta2: float = field(default=0.999, metadata=_help("Adam beta2."))
    adam_weight_decay: float = field(default=1e-2, metadata=_help("AdamW weight decay."))
    adam_weight_decay_text_encoder: float | None = field(
        default=None, metadata=_help("AdamW weight decay of the text encoder(s). Default: adam_weight_decay.")
    )
    adam_epsilon: float = field(default=1e-8, metadata=_help("Adam epsilon."))
    max_grad_norm: float | None = field(default=1.0, metadata=_help("Gradient clipping norm (0 or None: off)."))
    use_8bit_adam: bool = field(default=False, metadata=_help("8-bit AdamW from bitsandbytes (GPU)."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    gradient_checkpointing: bool = field(default=False, metadata=_help("Trade compute for memory."))
    mixed_precision: Literal[MIXED_PRECISION] | None = field(  # type: ignore[valid-type]
        default=None,
        metadata=_help("no, fp16 (GPU only) or bf16. Default: accelerate's config. Trainable weights stay fp32."),
    )
    snr_gamma: float | None = field(default=None, metadata=_help("Min-SNR loss weighting gamma (5.0 is typical)."))
    noise_offset: float = field(default=0.0, metadata=_help("Noise offset (0.1 is typical; 0 disables)."))
    max_nan_steps: int = field(
        default=5, metadata=_help("Stop after this many consecutive non-finite losses (each one is skipped).")
    )
    allow_tf32: bool = field(default=False, metadata=_help("Allow TF32 matmuls on Ampere+ GPUs (faster)."))
    seed: int = field(default=0, metadata=_help("Seed of data order, noise, class and validation images."))
    dataloader_num_workers: int = field(default=0, metadata=_help("DataLoader worker processes."))

    # --- Text encoder -----------------------------------------------------------------------------------------
    train_text_encoder: bool = field(default=False, metadata=_help("Train the text encoder(s) too."))
    text_encoder_steps: int | None = field(
        default=None,
        metadata=_help(
            "Two-stage schedule: train the text encoder for the first N steps only, then freeze it and drop it "
            "from the optimizer. Default: the whole run."
        ),
    )
    text_encoder_lr: float | None = field(
        default=None, metadata=_help("Learning rate of the text encoder. Default: learning_rate.")
    )
    pre_compute_text_embeddings: bool = field(
        default=False,
        metadata=_help("Encode each distinct prompt once while the text encoder is frozen (saves compute)."),
    )

    # --- LoRA -------------------------------------------------------------------------------------------------
    use_lora: bool = field(
        default=False, metadata=_help("Train LoRA adapters (PEFT) on the UNet attention projections.")
    )
    rank: int | None = field(default=None, metadata=_help("LoRA rank (default 4 with --use_lora)."))
    lora_alpha: int | None = field(default=None, metadata=_help("LoRA alpha (default: rank)."))
    lora_dropout: float | None = field(default=None, metadata=_help("LoRA dropout (default 0)."))
    use_dora: bool = field(
        default=False, metadata=_help("Weight-decomposed LoRA (DoRA, PEFT's use_dora) instead of plain LoRA.")
    )
    output_kohya_format: bool = field(
        default=False,
        metadata=_help(
            "Also write pytorch_lora_weights_kohya.safetensors (kohya/AUTOMATIC1111/ComfyUI key names) beside the "
            "diffusers LoRA file."
        ),
    )
    merge_lora: bool = field(
        default=False,
        metadata=_help("Also write the base pipeline with the LoRA fused into output_dir (loads without PEFT)."),
    )

    # --- Caching ----------------------------------------------------------------------------------------------
    cache_latents: bool = field(
        default=False, metadata=_help("Encode every image once with the frozen VAE and keep the latents.")
    )

    bad_images: Literal["skip", "error"] = field(
        default="skip",
        metadata={
            "help": "Unreadable instance/class images: 'skip' (dropped with one warning and a count, like the "
            "classifier trainer and `hfvision classify`) or 'error' (stop at the first)."
        },
    )

    # --- Aspect-ratio buckets, several subjects, caption dropout, quality metrics --------------------------------
    use_aspect_ratio_buckets: bool = field(
        default=False,
        metadata=_help("Train each photo at the bucket nearest its aspect ratio instead of a square crop."),
    )
    aspect_ratio_buckets: str | None = field(
        default=None,
        metadata=_help(
            "Buckets as 'height,width;height,width;...' (needs --use_aspect_ratio_buckets; "
            "default: computed with --bucket_reso_steps/--min_bucket_reso/--max_bucket_reso)."
        ),
    )
    bucket_reso_steps: int = field(default=64, metadata=_help("Computed buckets: side step in pixels (kohya's)."))
    min_bucket_reso: int | None = field(
        default=None, metadata=_help("Computed buckets: smallest side (default: resolution / 2).")
    )
    max_bucket_reso: int | None = field(
        default=None, metadata=_help("Computed buckets: largest side (default: resolution * 2).")
    )
    bucket_no_upscale: bool = field(
        default=False, metadata=_help("Buckets from each photo's own size, rounded down: never enlarge a photo.")
    )
    caption_dropout: float = field(
        default=0.0, metadata=_help("Probability of training a subject photo with the empty caption (e.g. 0.1).")
    )
    repeats: int = field(default=1, metadata=_help("Use every subject photo this many times per epoch."))
    concepts_list: str | None = field(
        default=None,
        metadata=_help(
            "JSON list of subjects (instance_prompt, instance_data_dir, class_prompt, class_data_dir, "
            "num_class_images, instance_token, repeats) to train in one run."
        ),
    )
    quality_metrics: bool = field(
        default=False,
        metadata=_help("At each validation, score CLIP-I, DINO, CLIP-T and prior drift (metrics.jsonl, report.html)."),
    )
    quality_clip_model: str = field(
        default=DEFAULT_CLIP_MODEL, metadata=_help("CLIP model (id or folder) of CLIP-I and CLIP-T.")
    )
    quality_dino_model: str = field(
        default=DEFAULT_DINO_MODEL, metadata=_help("DINO model (id or folder) of the DINO score (the paper's).")
    )
    select_best_by: Literal[QUALITY_METRICS] | None = field(  # type: ignore[valid-type]
        default=None,
        metadata=_help("Keep the validation step with the best clip_i, dino, clip_t or drift as the output."),
    )

    # --- Checkpoints ------------------------------------------------------------------------------------------
    checkpointing_steps: int = field(default=500, metadata=_help("Save a resumable checkpoint every N steps."))
    checkpoints_total_limit: int | None = field(default=None, metadata=_help("Keep at most this many checkpoints."))
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=_help(
            "'latest' (this run's newest checkpoint), a checkpoint folder, or a checkpoint name under output_dir. "
            "A named checkpoint that does not exist starts a fresh run with a warning (see strict_resume)."
        ),
    )
    strict_resume: bool = field(
        default=False, metadata=_help("Fail instead of starting fresh when resume_from_checkpoint is not found.")
    )

    # --- Validation and logging -------------------------------------------------------------------------------
    validation_prompt: list[str] | None = field(
        default=None, metadata=_help("Prompt(s) rendered every validation_steps into samples/ (fixed seed).")
    )
    num_validation_images: int = field(default=4, metadata=_help("Images per validation prompt."))
    validation_steps: int = field(default=100, metadata=_help("Render validation images every N steps."))
    validation_epochs: int | None = field(
        default=None, metadata=_help("Render validation images every N epochs instead (replaces validation_steps).")
    )
    validation_inference_steps: int = field(default=25, metadata=_help("Denoising steps of validation images."))
    validation_guidance_scale: float | None = field(
        default=None,
        metadata=_help(
            "Guidance scale of validation images. Default: the pipeline's own, as diffusers' scripts (7.5 SD, "
            "5.0 SDXL, 3.5 Flux.1-dev's guidance embedding, 7.0 SD3)."
        ),
    )
    report_to: Literal[REPORT_TO] = field(  # type: ignore[valid-type]
        default="tensorboard", metadata=_help("Tracker for loss, learning rate and validation images.")
    )
    logging_dir: str = field(default="logs", metadata=_help("Tracker folder, relative to output_dir."))
    tracker_project_name: str = field(default="dreambooth", metadata=_help("Run name given to the trackers."))

    # --- Output, Hub, sessions --------------------------------------------------------------------------------
    output_dir: str = field(
        default=DEFAULT_OUTPUT_DIR,
        metadata=_help("Where the trained pipeline is written (with --session: the session's model/ folder)."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("Start a new run in an output_dir that holds another run's model or checkpoints (deleted)."),
    )
    push_to_hub: bool = field(default=False, metadata=_help("Upload output_dir to the Hub at the end."))
    hub_model_id: str | None = field(default=None, metadata=_help("Hub repo id (default: output_dir's name)."))
    hub_private: bool = field(default=True, metadata=_help("Create the Hub repo as private."))
    session: str | None = field(
        default=None,
        metadata=_help("Session folder name (hfvision session): images, class images, checkpoints and samples."),
    )
    session_root: str = field(default="sessions", metadata=_help("Folder that holds the sessions."))
    hub_session: str | None = field(
        default=None,
        metadata=_help("Mirror the session to this private Hub repo (user/repo); resumes from it on a new machine."),
    )

    # --- Flow matching (Flux.1, SD3 / SD3.5) -----------------------------------------------------------------
    weighting_scheme: Literal[FLOW_WEIGHTING_SCHEMES] | None = field(  # type: ignore[valid-type]
        default=None,
        metadata=_help(
            "Flux/SD3: timestep density and loss weighting (sigma_sqrt, logit_normal, mode, cosmap, none). "
            "Default: none for Flux, logit_normal for SD3 (diffusers' scripts)."
        ),
    )
    logit_mean: float = field(default=0.0, metadata=_help("Flux/SD3: mean of the logit_normal density."))
    logit_std: float = field(default=1.0, metadata=_help("Flux/SD3: standard deviation of the logit_normal density."))
    mode_scale: float = field(default=1.29, metadata=_help("Flux/SD3: scale of the mode density."))
    guidance_scale: float | None = field(
        default=None,
        metadata=_help("Flux.1-dev: value of the guidance embedding while training (default 3.5; not for schnell)."),
    )
    max_sequence_length: int | None = field(
        default=None,
        metadata=_help("Flux/SD3: T5 prompt length in tokens (default: 512 Flux LoRA, 77 Flux full and SD3)."),
    )
    precondition_outputs: bool = field(
        default=False,
        metadata=_help("SD3: regress the clean latents (x0 = x_sigma - sigma * v) instead of the velocity."),
    )
    lora_layers: str | None = field(
        default=None,
        metadata=_help(
            "Flux/SD3 LoRA: comma-separated transformer modules to adapt, e.g. 'attn.to_k,attn.to_q,attn.to_v' "
            "(default: the attention projections, as diffusers' scripts)."
        ),
    )
    lora_blocks: str | None = field(
        default=None,
        metadata=_help("SD3 LoRA: comma-separated transformer block indices to adapt, e.g. '12,30' (default: all)."),
    )
    quantize_base: Literal[QUANTIZE_BASE] | None = field(  # type: ignore[valid-type]
        default=None,
        metadata=_help(
            "Flux/SD3 LoRA on a CUDA GPU: load the frozen transformer and T5 quantised, 'nf4' (bitsandbytes 4-bit, "
            "QLoRA-style) or 'int8' (torchao int8 weight-only). Needs `pip install 'hfvision[quant]'`."
        ),
    )

    def __post_init__(self) -> None:
        self._normalise()
        self._validate()

    # ----------------------------------------------------------------------------------------------------------
    def _normalise(self) -> None:
        if isinstance(self.validation_prompt, str):
            self.validation_prompt = [self.validation_prompt]
        if self.validation_prompt is not None:
            self.validation_prompt = list(self.validation_prompt)
        if self.max_grad_norm == 0:
            self.max_grad_norm = None
        if self.max_train_steps is None and self.num_train_epochs is None:
            self.max_train_steps = DEFAULT_MAX_TRAIN_STEPS
        if self.use_lora:
            self.rank = 4 if self.rank is None else self.rank
            self.lora_alpha = self.rank if self.lora_alpha is None else self.lora_alpha
            self.lora_dropout = 0.0 if self.lora_dropout is None else self.lora_dropout

    def _validate(self) -> None:
        def fail(message: str) -> None:
            raise ValueError(message)

        if not self.pretrained_model_name_or_path:
            fail("pretrained_model_name_or_path is required: a Hub id, a local folder, a .safetensors file or sd15")
        if not self.instance_data_dir and not self.session and not self.hub_session and not self.concepts_list:
            fail("instance_data_dir is required (a folder of subject photos), or pass --session NAME")
        if not isinstance(self.resolution, int) or self.resolution <= 0 or self.resolution % 8:
            lo, hi = max(8, self.resolution // 8 * 8), (self.resolution // 8 + 1) * 8
            fail(f"resolution={self.resolution!r} must be a positive multiple of 8; try {hi} or {lo}")
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
            value = getattr(self, name)
            if value is None and name in ("max_train_steps", "num_train_epochs", "validation_epochs"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name}={value!r} must be an integer >= 1")
        for name in ("lr_warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                fail(f"{name}={getattr(self, name)!r} must be >= 0")
        if not self.learning_rate > 0:
            fail(f"learning_rate={self.learning_rate!r} must be > 0 (typical: 5e-6 full, 1e-4 LoRA)")
        if self.prior_loss_weight < 0:
            fail(f"prior_loss_weight={self.prior_loss_weight!r} must be >= 0")
        if self.lr_scheduler not in LR_SCHEDULERS:
            fail(f"lr_scheduler={self.lr_scheduler!r} is not one of {', '.join(LR_SCHEDULERS)}")
        if self.mixed_precision not in (None, *MIXED_PRECISION):
            fail(f"mixed_precision={self.mixed_precision!r} must be one of no, fp16, bf16")
        if self.prior_generation_precision not in (None, "fp32", "fp16", "bf16"):
            fail(f"prior_generation_precision={self.prior_generation_precision!r} must be fp32, fp16 or bf16")
        if self.report_to not in REPORT_TO:
            fail(f"report_to={self.report_to!r} must be one of {', '.join(REPORT_TO)}")
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            fail(f"snr_gamma={self.snr_gamma!r} must be > 0 (5.0 is typical), or leave it unset")
        if self.noise_offset < 0:
            fail(f"noise_offset={self.noise_offset!r} must be >= 0 (0.1 is typical)")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            fail(f"max_grad_norm={self.max_grad_norm!r} must be > 0, or 0 to disable clipping")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            fail(f"checkpoints_total_limit={self.checkpoints_total_limit!r} must be >= 1, or unset for no limit")
        if "{token}" in self.instance_prompt and not self.instance_token.strip():
            fail("instance_token is empty but instance_prompt uses {token}; set e.g. --instance_token sks")

        # Prior preservation
        if self.with_prior_preservation and not self.class_prompt and not self.concepts_list:
            fail("with_prior_preservation needs --class_prompt, e.g. 'a photo of dog'")
        if not self.with_prior_preservation:
            for name in ("class_prompt", "class_data_dir"):
                if getattr(self, name):
                    fail(
                        f"{name}={getattr(self, name)!r} is set but prior preservation is off; "
                        f"add --with_prior_preservation or drop --{name}"
                    )

        self._validate_data_and_quality()

        # Text encoder
        if self.text_encoder_steps is not None:
            if not self.train_text_encoder:
                fail(f"text_encoder_steps={self.text_encoder_steps} needs --train_text_encoder")
            if self.text_encoder_steps < 1:
                fail(f"text_encoder_steps={self.text_encoder_steps!r} must be >= 1")
            if self.max_train_steps is not None and self.text_encoder_steps > self.max_train_steps:
                fail(
                    f"text_encoder_steps={self.text_encoder_steps} exceeds max_train_steps={self.max_train_steps}; "
                    "lower it, or drop it to train the text encoder for the whole run"
                )
        if self.adam_weight_decay_text_encoder is not None and self.adam_weight_decay_text_encoder < 0:
            fail(f"adam_weight_decay_text_encoder={self.adam_weight_decay_text_encoder!r} must be >= 0")
        if self.text_encoder_lr is not None:
            if not self.train_text_encoder:
                fail(f"text_encoder_lr={self.text_encoder_lr} needs --train_text_encoder")
            if not self.text_encoder_lr > 0:
                fail(f"text_encoder_lr={self.text_encoder_lr!r} must be > 0")
        if self.pre_compute_text_embeddings and self.train_text_encoder and self.text_encoder_steps is None:
            fail(
                "pre_compute_text_embeddings needs a frozen text encoder, but train_text_encoder trains it for the "
                "whole run; drop one, or set --text_encoder_steps N (embeddings are cached after step N)"
            )

        # LoRA
        if not self.use_lora:
            for name in ("rank", "lora_alpha", "lora_dropout"):
                if getattr(self, name) is not None:
                    fail(f"{name}={getattr(self, name)!r} only applies with --use_lora; add it or drop --{name}")
            for name in ("merge_lora", "use_dora", "output_kohya_format"):
                if getattr(self, name):
                    fail(f"{name} only applies with --use_lora (examples/train_dreambooth_lora.py turns it on)")
        else:
            if not isinstance(self.rank, int) or self.rank < 1:
                fail(f"rank={self.rank!r} must be an integer >= 1 (4-32 is typical)")
            if self.lora_alpha < 1:
                fail(f"lora_alpha={self.lora_alpha!r} must be >= 1")
            if not 0 <= self.lora_dropout < 1:
                fail(f"lora_dropout={self.lora_dropout!r} must be in [0, 1)")

        if self.overwrite_output_dir and self.resume_from_checkpoint:
            fail("overwrite_output_dir starts a new run and resume_from_checkpoint continues one; pass only one")
        if self.cache_latents and self.random_flip:
            fail("cache_latents keeps one latent per image, so it cannot be combined with random_flip; drop one")
        if self.push_to_hub and self.hub_model_id is not None and self.hub_model_id.count("/") > 1:
            fail(f"hub_model_id={self.hub_model_id!r} must look like 'name' or 'user/name'")
        if self.hub_session is not None and self.hub_session.count("/") != 1:
            fail(f"hub_session={self.hub_session!r} must look like 'user/repo'")
        self._validate_flow()

    def _validate_flow(self) -> None:
        """Flow-matching options that need no base model (the family checks run in the trainer, before loading)."""
        if self.weighting_scheme is not None and self.weighting_scheme not in FLOW_WEIGHTING_SCHEMES:
            schemes = ", ".join(FLOW_WEIGHTING_SCHEMES)
            raise ValueError(f"weighting_scheme={self.weighting_scheme!r} is not one of {schemes}")
        if not self.logit_std > 0:
            raise ValueError(f"logit_std={self.logit_std!r} must be > 0 (diffusers' default is 1.0)")
        if not self.use_lora:
            for name in ("lora_layers", "lora_blocks"):
                if getattr(self, name):
                    raise ValueError(f"{name}={getattr(self, name)!r} only applies with --use_lora; drop --{name}")
        if self.quantize_base is not None:
            if self.quantize_base not in QUANTIZE_BASE:
                raise ValueError(f"quantize_base={self.quantize_base!r} must be one of {', '.join(QUANTIZE_BASE)}")
            if not self.use_lora:
                raise ValueError("quantize_base trains LoRA adapters over a frozen quantised base: add --use_lora")
            if self.merge_lora:
                raise ValueError(
                    "merge_lora would fuse into the quantised base (rounding errors); drop --merge_lora and fuse into "
                    "the full-precision base: pipe.load_lora_weights(out); pipe.fuse_lora()"
                )
        if self.lora_blocks:
            try:
                [int(b) for b in self.lora_blocks.split(",")]
            except ValueError:
                raise ValueError(
                    f"lora_blocks={self.lora_blocks!r} must be comma-separated block indices, e.g. '12,30'"
                ) from None

    # ----------------------------------------------------------------------------------------------------------
    @property
    def resolved_instance_prompt(self) -> str:
        """``instance_prompt`` with ``{token}`` replaced by ``instance_token``."""
        return self.expand(self.instance_prompt)

    def expand(self, prompt: str) -> str:
        """Replace ``{token}`` in ``prompt`` with the trained identifier."""
        return prompt.replace("{token}", self.instance_token)

    @property
    def resolved_class_noun(self) -> str | None:
        """``class_noun``, or the word after the token in the instance prompt ("a photo of sks dog" -> "dog")."""
        if self.class_noun:
            return self.class_noun
        words = self.resolved_instance_prompt.replace(",", " ").split()
        token = self.instance_token.strip()
        if token in words and words.index(token) + 1 < len(words):
            return words[words.index(token) + 1]
        return None

    @property
    def trained_token(self) -> str | None:
        """The identifier the model learns: ``instance_token`` when the instance prompt contains it."""
        token = self.instance_token.strip()
        return token if token and token in self.resolved_instance_prompt.split() else None

    def _validate_data_and_quality(self) -> None:
        from .concepts import check_caption_dropout

        check_caption_dropout(self.caption_dropout)
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"repeats={self.repeats!r} must be an integer >= 1")
        if self.aspect_ratio_buckets and not self.use_aspect_ratio_buckets:
            raise ValueError("aspect_ratio_buckets needs --use_aspect_ratio_buckets (add it, or drop the list)")
        if self.use_aspect_ratio_buckets:
            from .buckets import parse_buckets

            if self.aspect_ratio_buckets:
                parse_buckets(self.aspect_ratio_buckets)
            else:
                self.bucket_settings()  # raises on bad kohya parameters
            if self.cache_latents and self.random_flip:
                raise ValueError("cache_latents keeps one latent per image and bucket; drop --random_flip")
        if self.concepts_list and self.instance_data_dir:
            raise ValueError("pass --concepts_list or --instance_data_dir, not both (the list names each folder)")
        if self.concepts_list and (self.class_prompt or self.class_data_dir):
            raise ValueError("with --concepts_list, set class_prompt / class_data_dir per subject in the list")
        if self.select_best_by is not None:
            if self.select_best_by not in QUALITY_METRICS:
                raise ValueError(f"select_best_by={self.select_best_by!r} must be one of {', '.join(QUALITY_METRICS)}")
            if not self.quality_metrics or not self.validation_prompt:
                raise ValueError(
                    "select_best_by needs --quality_metrics and --validation_prompt (it ranks their scores)"
                )
            if self.select_best_by == "drift" and not (self.class_prompt or self.concepts_list):
                raise ValueError(
                    "select_best_by='drift' needs class prompts: add --with_prior_preservation --class_prompt"
                )
        if self.quality_metrics and not self.validation_prompt:
            raise ValueError("quality_metrics scores the validation images: add --validation_prompt")

    def bucket_settings(self) -> tuple[int, int, int]:
        """``(min_bucket_reso, max_bucket_reso, bucket_reso_steps)`` with the defaults filled in (kohya's 256/1024/64
        at resolution 512, scaled with the resolution)."""
        steps = self.bucket_reso_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0 or steps % 8:
            raise ValueError(f"bucket_reso_steps={steps!r} must be a positive multiple of 8 (64 is typical)")
        low = (
            self.min_bucket_reso
            if self.min_bucket_reso is not None
            else max(steps, self.resolution // 2 // steps * steps)
        )
        high = self.max_bucket_reso if self.max_bucket_reso is not None else self.resolution * 2 // steps * steps
        from .buckets import make_buckets

        make_buckets(self.resolution, low, high, steps)
        return low, high, steps

    def run_identity(self) -> str:
        """``"<config hash>-seed<seed>"``: equal for a run and its resumptions, different for another run."""
        return run_identity_of({k: getattr(self, k) for k in RUN_IDENTITY_FIELDS})

    @property
    def text_encoder_learning_rate(self) -> float:
        return self.text_encoder_lr if self.text_encoder_lr is not None else self.learning_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (YAML/JSON-safe), every field."""
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write every option to ``path`` (atomically); [`DreamBoothConfig.from_yaml`] reads it back."""
        import yaml

        from ...utils.io import atomic_write

        with atomic_write(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)
        return Path(path)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DreamBoothConfig:
        """Build from a mapping; unknown keys are an error naming the closest option."""
        check_known_keys(values, source="config")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> DreamBoothConfig:
        """Read a YAML file written by hand or by [`DreamBoothConfig.to_yaml`]; ``overrides`` win."""
        from ...utils.config_parser import load_yaml_options  # the one YAML loader of hfvision's configs

        values = load_yaml_options(path, cls)
        values.update(overrides)
        return cls.from_dict(values)


def run_identity_of(values: dict[str, Any]) -> str:
    """The run identity of a mapping of [`RUN_IDENTITY_FIELDS`] values (see [`DreamBoothConfig.run_identity`])."""
    import hashlib
    import json

    kept = {k: values.get(k) for k in RUN_IDENTITY_FIELDS}
    omitted_at_default = {**DATA_INVARIANT_DEFAULTS, **FLOW_INVARIANT_DEFAULTS}
    kept = {k: v for k, v in kept.items() if k not in omitted_at_default or v != omitted_at_default[k]}
    blob = json.dumps(kept, sort_keys=True, default=str)
    return f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}-seed{values.get('seed')}"


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(DreamBoothConfig)]


def check_known_keys(values: dict[str, Any], source: str) -> None:
    names = field_names()
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown option {key!r}{hint}")
