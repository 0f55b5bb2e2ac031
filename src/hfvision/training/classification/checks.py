"""hfvision's own checks of a classifier config's values, shared by [`ImageClassificationConfig`] and the light flags
class of `hfvision train classifier` (:mod:`.flags`); imports nothing heavy."""

from __future__ import annotations

BAD_IMAGE_POLICIES = ("skip", "error", "off")
LORA_SAVE_MODES = ("both", "merged", "adapter")


def check_options(config) -> None:
    """hfvision's own checks of a classifier config's values (raises `ValueError` naming the field and the fix); run
    by [`ImageClassificationConfig`] and by the snapshot's flags class before transformers loads."""
    if not config.model_name_or_path:
        raise ValueError(
            "model_name_or_path is required (--model): a Hub id or a local directory of an image classifier"
        )
    if not config.data:
        raise ValueError(
            "data is required (--data): an imagefolder directory, a save_to_disk directory or a Hub dataset id"
        )
    if not (config.num_train_epochs > 0 or config.max_steps > 0):
        raise ValueError(f"num_train_epochs={config.num_train_epochs:g} must be > 0 (--epochs), or set max_steps")
    if not config.validation_size > 0:
        raise ValueError(
            f"validation_size={config.validation_size} must be > 0 (a fraction below 1 or an image count)"
        )
    if config.bad_images not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images={config.bad_images!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
    if config.lora_save not in LORA_SAVE_MODES:
        raise ValueError(f"lora_save={config.lora_save!r} must be one of {', '.join(LORA_SAVE_MODES)}")
    if config.lora and config.lora_r < 1:
        raise ValueError(f"lora_r={config.lora_r} must be a positive rank, e.g. 8")
