"""Fine-tuning image classifiers: a `transformers.Trainer` subclass over `datasets`, `evaluate` and PEFT.

``ImageClassificationTrainer(config).train()`` fine-tunes a transformers or timm classifier on an imagefolder, a
``save_to_disk`` dataset or a Hub dataset; ``save_pipeline()``/``push_to_hub()`` publish a pipeline repo (model,
processor, custom pipeline code for tasks such as ``gender-classification``, model card, metrics).

>>> from hfvision.training.classification import ImageClassificationConfig, ImageClassificationTrainer
>>> config = ImageClassificationConfig(model_name_or_path="google/vit-base-patch16-224", data="faces/",
...                                    output_dir="out", task="gender-classification", lora=True)
>>> trainer = ImageClassificationTrainer(config)
>>> trainer.train()
>>> trainer.save_pipeline()

Importing this package is light; the names below load transformers on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfvision.utils.lazy import lazy_exports

# public name -> submodule defining it
_LAZY = {
    "ImageClassificationConfig": "config",
    "ImageClassificationTrainer": "trainer",
    "TrainingResult": "trainer",
    "train_classifier": "trainer",
    "ClassificationData": "data",
    "load_classification_data": "data",
    "ClassificationMetrics": "metrics",
    "classification_report": "metrics",
    "save_report": "metrics",
    "load_classifier": "modeling",
    "add_lora": "modeling",
    "ARCHITECTURES": "modeling",
    "TIMM_ARCHITECTURES": "modeling",
    "write_synthetic_imagefolder": "synthetic",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .config import ImageClassificationConfig  # noqa: F401
    from .trainer import ImageClassificationTrainer, TrainingResult, train_classifier  # noqa: F401
