"""`DreamBoothConfig`: the single source of every DreamBooth option (Python, YAML and command-line flags).

Flag names follow diffusers' ``examples/dreambooth/train_dreambooth.py`` wherever the option is the same, so its
users can switch by changing the script name. Flags are generated from the dataclass with transformers'
``HfArgumentParser``; ``--config run.yaml`` sets any option and flags given beside it win.

This module imports neither torch nor diffusers: ``hfvision --help`` and config validation stay fast. The checks
run on construction are in ``config_checks.py``, the option vocabularies and run-identity fields in
``constants.py`` (all importable from here).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...evaluation import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL  # plain strings (the package loads lazily)
from .config_checks import normalise_options, validate_options
from .constants import (
    DATA_INVARIANT_DEFAULTS,
    DEFAULT_MAX_TRAIN_STEPS,
    DEFAULT_OUTPUT_DIR,
    FLOW_INVARIANT_DEFAULTS,
    FLOW_WEIGHTING_SCHEMES,
    LR_SCHEDULERS,
    MIXED_PRECISION,
    QUALITY_METRICS,
    QUANTIZE_BASE,
    REPORT_TO,
    RESUME_INVARIANT_FIELDS,
    RUN_IDENTITY_FIELDS,
)

__all__ = [
    "DATA_INVARIANT_DEFAULTS",
    "DEFAULT_MAX_TRAIN_STEPS",
    "DEFAULT_OUTPUT_DIR",
    "FLOW_INVARIANT_DEFAULTS",
    "FLOW_WEIGHTING_SCHEMES",
    "LR_SCHEDULERS",
    "MIXED_PRECISION",
    "QUALITY_METRICS",
    "QUANTIZE_BASE",
    "REPORT_TO",
    "RESUME_INVARIANT_FIELDS",
    "RUN_IDENTITY_FIELDS",
    "DreamBoothConfig",
    "check_known_keys",
    "field_names",
    "run_identity_of",
]


def _help(text: str) -> dict:
    return {"help": text}


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
        normalise_options(self)
        validate_options(self)

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
