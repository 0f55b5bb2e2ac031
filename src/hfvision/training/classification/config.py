"""`ImageClassificationConfig`: model, data, label and LoRA options on top of `transformers.TrainingArguments`.

One dataclass is the single source of every option: Python keyword arguments, YAML files
(``HfArgumentParser(ImageClassificationConfig).parse_yaml_file(...)`` or :meth:`ImageClassificationConfig.from_yaml`)
and the ``hfvision train classifier`` flags are all generated from its fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from transformers import TrainingArguments
from transformers.trainer_utils import HubStrategy, IntervalStrategy, SaveStrategy

from ...utils.config_parser import option
from .checks import check_options


@dataclass
class ImageClassificationConfig(TrainingArguments):
    """Options of an image-classifier fine-tuning run: every `TrainingArguments` field plus the ones below.

    Defaults differ from `TrainingArguments` where image classification needs it: evaluation, checkpointing and
    logging happen every epoch, ``remove_unused_columns=False`` (images are transformed lazily, the raw ``image``
    column must reach the transform), at most 2 checkpoints are kept, and ``hub_strategy="end"`` (only the finished
    pipeline repo is pushed, never a half-trained checkpoint).

    Args:
        model_name_or_path (`str`):
            Base model: a Hub id or a local directory of a transformers image classifier (ViT, ...) or a timm model
            saved in timm's Hub layout (loaded through transformers' TimmWrapper). CLI: ``--model``.
        data (`str`):
            An ``imagefolder`` directory (one subfolder per class, optionally under ``train/``/``validation/``), a
            dataset saved with ``save_to_disk``, or a Hub dataset id with image and label columns. CLI: ``--data``.
        task (`str`, *optional*, defaults to `"image-classification"`):
            Pipeline task of the saved repo, e.g. ``"gender-classification"`` (a custom hfvision task: its pipeline
            code is saved with the model as ``custom_pipelines``).
        validation_size (`float`, *optional*, defaults to 0.2):
            When the data has no validation split, this fraction (or, if >= 1, this number of images) is held out
            with a seeded stratified split.
        lora (`bool`, *optional*, defaults to `False`):
            Train a PEFT LoRA adapter (target modules chosen per architecture) and the classifier head instead of all
            weights.

    Example:

    >>> config = ImageClassificationConfig(model_name_or_path="tiny-vit", data="photos/", output_dir="out", num_train_epochs=2)
    >>> config.num_train_epochs
    2
    """

    # --- model -----------------------------------------------------------------------------------------------------
    model_name_or_path: str | None = option(
        None,
        "Base model: Hub id or local directory (transformers image classifier or timm model).",
        aliases=["--model"],
    )
    model_revision: str | None = option(None, "Revision (branch, tag, commit) of the model.")
    trust_remote_code: bool = option(False, "Allow custom modelling code from the model repo (off unless you say so).")
    task: str = option(
        "image-classification", "Pipeline task of the saved repo, e.g. 'gender-classification' (custom hfvision task)."
    )

    # --- data ------------------------------------------------------------------------------------------------------
    data: str | None = option(
        None, "imagefolder directory (class per subfolder), save_to_disk directory, or Hub dataset id."
    )
    data_revision: str | None = option(None, "Revision of a Hub dataset.")
    train_split: str = option("train", "Name of the training split.")
    validation_split: str | None = option(
        None, "Validation split name (default: 'validation'/'valid'/'val'/'test' if present, else split)."
    )
    validation_size: float = option(
        0.2, "Held-out fraction (<1) or image count (>=1) for the automatic stratified split."
    )
    image_column: str | None = option(None, "Image column (default: the column with an Image feature).")
    label_column: str | None = option(None, "Label column (default: 'label', 'labels' or the only ClassLabel column).")
    group_column: str | None = option(
        None, "Column of groups for a per-group report (default: a column named 'group', if any)."
    )
    bad_images: Literal["skip", "error", "off"] = option(
        "skip",
        "Unreadable images: 'skip' (drop them with a warning and a count), 'error' (stop at the first; "
        "--strict) or 'off' (no up-front check; a bad image then fails during training).",
    )
    max_train_samples: int | None = option(None, "Use at most this many training images.")
    max_eval_samples: int | None = option(None, "Use at most this many validation images.")
    augment: bool = option(
        True,
        "Random training augmentation (timm models: timm's training transform; others: random resized "
        "crop + horizontal flip before the model's image processor).",
    )

    # --- LoRA ------------------------------------------------------------------------------------------------------
    lora: bool = option(
        False, "Train a PEFT LoRA adapter + classifier head instead of all weights (raise learning_rate)."
    )
    lora_r: int = option(8, "LoRA rank.")
    lora_alpha: int = option(16, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = option(0.0, "Dropout on the LoRA branch.")
    lora_target_modules: list[str] | None = option(
        None, "Module names to adapt (default: chosen per architecture, e.g. ViT query/value)."
    )
    lora_save: Literal["both", "merged", "adapter"] = option(
        "both",
        "'both': merged pipeline repo + adapter/ subfolder; 'merged': merged weights only; 'adapter': "
        "the repo holds only the PEFT adapter (needs the base model to load).",
    )

    # --- TrainingArguments defaults changed for image classification ----------------------------------------------
    num_train_epochs: float = option(3.0, "Total number of training epochs to perform.", aliases=["--epochs"])
    eval_strategy: IntervalStrategy | str = option("epoch", "When to evaluate: 'no', 'steps' or 'epoch'.")
    save_strategy: SaveStrategy | str = option("epoch", "When to checkpoint: 'no', 'steps', 'epoch' or 'best'.")
    logging_strategy: IntervalStrategy | str = option("epoch", "When to log: 'no', 'steps' or 'epoch'.")
    save_total_limit: int | None = option(2, "Keep at most this many checkpoints.")
    remove_unused_columns: bool = option(
        False, "Keep False: images are transformed lazily and the raw columns must reach the transform."
    )
    hub_strategy: HubStrategy | str = option(
        "end",
        "'end' pushes only the finished pipeline repo. The others (see TrainingArguments) let Trainer "
        "also push during training, in its own format: pickled training_args.bin, and with 'checkpoint'/"
        "'all_checkpoints' whole checkpoints (optimizer/scheduler/RNG state are pickles too).",
    )

    # --- output directory ------------------------------------------------------------------------------------------
    overwrite_output_dir: bool = option(
        False,
        "Train into an output_dir that holds another run's model or checkpoints, replacing them "
        "(default: refuse; continue that run with --resume_from_checkpoint latest).",
    )

    def __post_init__(self):
        check_options(self)
        if self.label_names is None:
            # PEFT-wrapped models hide `labels` from the forward signature Trainer inspects; name it explicitly.
            self.label_names = ["labels"]
        super().__post_init__()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> ImageClassificationConfig:
        """Read options from a YAML file (keys are field names); ``overrides`` win over the file.

        >>> config = ImageClassificationConfig.from_yaml("train.yaml", output_dir="run2")
        """
        from ...utils.config_parser import check_known_keys, load_yaml_options

        values = load_yaml_options(path)
        values.update(overrides)
        check_known_keys(values, cls, source=str(path))
        return cls(**values)

    def hyperparameters(self) -> dict[str, Any]:
        """The options that shape the trained weights (for the model card and logs)."""
        keys = [
            "learning_rate",
            "num_train_epochs",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "weight_decay",
            "lr_scheduler_type",
            "warmup_steps",
            "seed",
            "augment",
            "validation_size",
        ]
        if self.lora:
            keys += ["lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"]
        out = {}
        for key in keys:
            value = getattr(self, key)
            out[key] = value.value if hasattr(value, "value") else value
        return out
