"""Command-line parsing for the DreamBooth trainer: one flag per [`DreamBoothConfig`] field, ``--config run.yaml``,
and the flags of diffusers' DreamBooth scripts that have no option of their own here.

diffusers' ``train_dreambooth.py``, ``train_dreambooth_lora.py``, ``train_dreambooth_lora_sdxl.py`` and the Flux/SD3
scripts' (``train_dreambooth[_lora]_flux.py``, ``train_dreambooth[_lora]_sd3.py``) command lines run unchanged: a flag
whose meaning hfvision shares maps to its option (``--offset_noise`` is ``--noise_offset 0.1``), a flag that only tunes
something hfvision already does is accepted and logged, ``--dataset_name`` is written once to an image folder with
caption files (see ``hub_dataset.py``), and a flag for a feature the trainer does not have (DeepFloyd IF, EDM, Prodigy,
...) is refused in one line that says what to do instead.

>>> config = parse_dreambooth_args(["--pretrained_model_name_or_path", "sd15", "--instance_data_dir", "photos",
...                                 "--offset_noise"])
>>> config.noise_offset
0.1
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ...utils.config_parser import STRICT_IMAGES, CompatFlags, build_config_parser, option, parse_config
from ...utils.logging import get_logger
from .config import DreamBoothConfig

logger = get_logger(__name__)

DESCRIPTION = "DreamBooth fine-tuning (SD 1.x/2.x/XL, Flux.1, SD3; full or LoRA) with Accelerate."
DIFFUSERS_NOISE_OFFSET = 0.1  # diffusers' --offset_noise adds 0.1 x per-channel noise


@dataclass
class DiffusersScriptFlags:
    """Flags of diffusers' DreamBooth scripts without a [`DreamBoothConfig`] option of their own."""

    offset_noise: bool = option(False, "diffusers' name for --noise_offset 0.1.")
    hub_token: str | None = option(
        None, "Hub token; prefer `hf auth login` or HF_TOKEN (a token typed here lands in shell history)."
    )
    local_rank: int = option(-1, "Ignored: accelerate sets the process rank.")
    enable_xformers_memory_efficient_attention: bool = option(
        False, "Ignored: PyTorch's SDPA attention (the default) is already memory-efficient."
    )
    set_grads_to_none: bool = option(False, "Ignored: gradients are always set to None.")
    upcast_before_saving: bool = option(
        False, "Ignored (Flux/SD3 LoRA scripts): trained weights are always kept in float32."
    )
    validation_scheduler: str | None = option(None, "Ignored: validation images use the base model's own scheduler.")
    image_interpolation_mode: str = option(
        "lanczos", "Resize filter of the images; lanczos (diffusers' default) only."
    )
    optimizer: str = option("AdamW", "AdamW (or --use_8bit_adam); Prodigy is not supported.")
    prodigy_beta3: float | None = option(None, "Prodigy only (not supported).")
    prodigy_decouple: bool = option(True, "Prodigy only (not supported).")
    prodigy_use_bias_correction: bool = option(True, "Prodigy only (not supported).")
    prodigy_safeguard_warmup: bool = option(True, "Prodigy only (not supported).")
    # Not supported: refused when given (see _UNSUPPORTED for why and what to do instead).
    tokenizer_name: str | None = option(None, "Not supported: the base's tokenizer is used.")
    tokenizer_max_length: int | None = option(None, "DeepFloyd IF only (not supported).")
    text_encoder_use_attention_mask: bool = option(False, "DeepFloyd IF only (not supported).")
    class_labels_conditioning: str | None = option(None, "DeepFloyd IF only (not supported).")
    validation_images: list[str] | None = option(None, "DeepFloyd IF only (not supported).")
    skip_save_text_encoder: bool = option(False, "Not supported: the whole pipeline is saved.")
    do_edm_style_training: bool = option(False, "EDM training (not supported).")
    pretrained_vae_model_name_or_path: str | None = option(None, "Not supported yet.")
    dataset_name: str | None = option(
        None, "Hub image dataset instead of --instance_data_dir (written once to a cached image folder)."
    )
    dataset_config_name: str | None = option(None, "Configuration of --dataset_name.")
    cache_dir: str | None = option(None, "datasets' cache folder for --dataset_name.")
    image_column: str = option("image", "Image column of --dataset_name.")
    caption_column: str | None = option(
        None, "Caption column of --dataset_name (default: instance_prompt for every image)."
    )


_UNSUPPORTED = {
    "tokenizer_name": "the base model's own tokenizer is always used; drop the flag",
    "tokenizer_max_length": "it is for DeepFloyd IF, which the trainer does not train",
    "text_encoder_use_attention_mask": "it is for DeepFloyd IF, which the trainer does not train",
    "class_labels_conditioning": "it is for DeepFloyd IF, which the trainer does not train",
    "validation_images": "it is for DeepFloyd IF upscalers, which the trainer does not train",
    "skip_save_text_encoder": "the saved pipeline always includes its text encoder; drop the flag",
    "do_edm_style_training": "EDM-style training is not implemented; drop the flag",
    "pretrained_vae_model_name_or_path": "use a base model folder whose vae/ is the VAE you want",
}
_DATASET_ONLY = ("dataset_config_name", "cache_dir", "image_column", "caption_column")


def apply_diffusers_flags(flags: DiffusersScriptFlags, values: dict) -> dict:
    """Fold diffusers-only ``flags`` into [`DreamBoothConfig`] keyword ``values`` (returned); refuse the unsupported."""
    defaults = DiffusersScriptFlags()
    for name, reason in _UNSUPPORTED.items():
        if getattr(flags, name) != getattr(defaults, name):
            raise ValueError(f"--{name} is not supported by hfvision's DreamBooth trainer: {reason}")
    if flags.dataset_name:
        if values.get("instance_data_dir"):
            raise ValueError("pass --dataset_name or --instance_data_dir, not both")
        from .hub_dataset import materialize_image_dataset

        values["instance_data_dir"] = str(
            materialize_image_dataset(
                flags.dataset_name,
                flags.dataset_config_name,
                flags.image_column,
                flags.caption_column,
                1,  # --repeats is a trainer option (DreamBoothConfig.repeats), applied to any image folder
                flags.cache_dir,
            )
        )
    else:
        for name in _DATASET_ONLY:
            if getattr(flags, name) != getattr(defaults, name):
                raise ValueError(
                    f"--{name} only applies with --dataset_name; with --instance_data_dir use name.txt "
                    "caption files beside the images"
                )
    if flags.optimizer.lower() != "adamw":
        raise ValueError(f"--optimizer {flags.optimizer}: only AdamW is supported (add --use_8bit_adam for 8-bit)")
    if flags.image_interpolation_mode.lower() != "lanczos":
        raise ValueError(f"--image_interpolation_mode {flags.image_interpolation_mode}: only lanczos is supported")
    if flags.offset_noise and not values.get("noise_offset"):
        values["noise_offset"] = DIFFUSERS_NOISE_OFFSET
    if flags.hub_token:
        logger.warning("--hub_token: prefer `hf auth login` or the HF_TOKEN variable; using the token for this run")
        os.environ["HF_TOKEN"] = flags.hub_token
    if flags.validation_scheduler:
        logger.info("--validation_scheduler ignored: validation uses the base model's scheduler")
    if flags.enable_xformers_memory_efficient_attention:
        logger.info("--enable_xformers_memory_efficient_attention ignored: SDPA attention is memory-efficient")
    return values


#: options ``--help`` lists (the rest, and diffusers' compatibility flags, are listed by ``--help-all``)
COMMON_OPTIONS = (
    "pretrained_model_name_or_path",
    "instance_data_dir",
    "instance_prompt",
    "with_prior_preservation",
    "class_prompt",
    "num_class_images",
    "resolution",
    "train_batch_size",
    "max_train_steps",
    "learning_rate",
    "train_text_encoder",
    "use_lora",
    "rank",
    "output_dir",
    "checkpointing_steps",
    "resume_from_checkpoint",
    "validation_prompt",
    "mixed_precision",
    "push_to_hub",
    "hub_model_id",
)


def parser_options(description: str | None = None) -> dict:
    """The :func:`~hfvision.utils.config_parser.parse_config` keywords of the DreamBooth command line: ``--help``
    lists :data:`COMMON_OPTIONS` (two screens), ``--help-all`` every option and diffusers' flags; ``--strict`` stops
    at the first unreadable image."""
    return {
        "description": description or DESCRIPTION,
        "visible": COMMON_OPTIONS,
        "switches": (STRICT_IMAGES,),
        "compat": CompatFlags(DiffusersScriptFlags, apply_diffusers_flags),
    }


def build_argument_parser(prog: str | None = None, description: str | None = None, show_all: bool = False):
    """The parser :func:`parse_dreambooth_args` uses (one flag per [`DreamBoothConfig`] field, diffusers' script
    flags, ``--strict``, ``--config`` and ``--help-all``)."""
    return build_config_parser(DreamBoothConfig, prog, show_all=show_all, **parser_options(description))


def parse_dreambooth_args(
    argv: list[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
    text_encoder_defaults: dict | None = None,
    **defaults,
) -> DreamBoothConfig:
    """Parse command-line flags (and ``--config run.yaml``) into a [`DreamBoothConfig`] with
    :func:`~hfvision.utils.config_parser.parse_config`.

    Precedence: flags, then the YAML file, then ``defaults`` (a script's own defaults, e.g. ``use_lora=True`` in
    ``examples/train_dreambooth_lora.py``; ``text_encoder_defaults`` join them when ``--train_text_encoder`` is given,
    as diffusers' scripts apply their text-encoder settings only to a trained encoder), then the dataclass defaults.

    >>> config = parse_dreambooth_args(["--config", "examples/configs/tiny.yaml", "--max_train_steps", "20"])
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if text_encoder_defaults and "--train_text_encoder" in argv:
        defaults = {**defaults, **text_encoder_defaults}
    return parse_config(DreamBoothConfig, argv, prog, defaults=defaults, **parser_options(description))
