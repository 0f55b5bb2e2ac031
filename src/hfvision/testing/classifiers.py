"""Tiny, seeded image classifiers: a ViT gender classifier and a timm ResNet in timm's Hub layout."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..utils.timm_config import fix_timm_config

GENDER_LABELS = ("female", "male")


def tiny_vit_classifier(
    labels: tuple[str, ...] = GENDER_LABELS,
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
):
    """A seeded ``ViTForImageClassification`` (hidden 32, 2 layers) and its ``ViTImageProcessor``.

    >>> model, processor = tiny_vit_classifier()
    >>> model.config.id2label
    {0: 'female', 1: 'male'}
    """
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return model, processor


def save_pretrained_pair(out_dir: str | os.PathLike, model, processor) -> Path:
    """``save_pretrained`` a tiny model (safetensors) and its processor into ``out_dir``; return the directory."""
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


def save_tiny_vit_classifier(out_dir: str | os.PathLike, **kwargs) -> Path:
    """Save :func:`tiny_vit_classifier` (model + image processor, safetensors) and return the directory."""
    return save_pretrained_pair(out_dir, *tiny_vit_classifier(**kwargs))


def fast_classifier_config(
    model: str | os.PathLike, data: str | os.PathLike, output_dir: str | os.PathLike, **overrides
):
    """An [`ImageClassificationConfig`] tuned for seconds-long CPU runs on the tiny models (3 epochs at learning rate
    1e-3, batches of 8, a quarter of the images for validation, seed 0, no progress bars); ``overrides`` win.

    >>> config = fast_classifier_config(save_tiny_vit_classifier("vit"), "photos/", "out", num_train_epochs=1)
    """
    from ..training.classification import ImageClassificationConfig

    values = dict(
        model_name_or_path=str(model),
        data=str(data),
        output_dir=str(output_dir),
        num_train_epochs=3,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        seed=0,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        use_cpu=True,
        validation_size=0.25,
    )
    values.update(overrides)
    return ImageClassificationConfig(**values)


def tiny_timm_resnet(num_classes: int = 10, layers: tuple[int, ...] = (1, 1, 1, 1), seed: int = 0):
    """A seeded timm ``resnet18``-family model with ``layers`` blocks per stage.

    timm attaches resnet18.a1_in1k's ``pretrained_cfg`` (224 / crop 0.95 / bicubic, test size 288), so the
    tiny model preprocesses exactly like the real checkpoint.
    """
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, layers=list(layers))
    return model.eval()


def save_tiny_timm_resnet(
    out_dir: str | os.PathLike,
    num_classes: int = 10,
    layers: tuple[int, ...] = (1, 1, 1, 1),
    label_names: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny timm ResNet in timm's Hub layout, loadable by TimmWrapper and ``timm.create_model("local-dir:...")``.

    Weights are written as ``model.safetensors`` only (timm's ``save_for_hf`` defaults to a pickle
    ``pytorch_model.bin``, which hfvision refuses to load unless asked).

    Works around two TimmWrapper incompatibilities: ``save_for_hf`` records ``num_classes`` inside
    ``model_args`` (TimmWrapper passes it again: "got multiple values for keyword argument"), and the
    ``pretrained_cfg`` must be present for transformers to find an image processor.
    """
    import timm.models

    model = tiny_timm_resnet(num_classes, layers, seed)
    out_dir = Path(out_dir)
    model_config = {"label_names": label_names} if label_names else None
    timm.models.save_for_hf(
        model, str(out_dir), model_config=model_config, model_args={"layers": list(layers)}, safe_serialization=True
    )
    fix_timm_config(out_dir / "config.json")
    return out_dir
