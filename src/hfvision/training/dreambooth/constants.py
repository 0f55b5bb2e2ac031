"""The vocabularies and field lists of [`DreamBoothConfig`]: option choices, defaults, and which options make a run
the same run (resume and no-lost-work checks). Plain values, no imports.
"""

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
