"""Training and evaluation transforms taken from the model's own preprocessing config, applied lazily.

- Evaluation: the model's image processor itself, so validation metrics match what the saved pipeline computes.
- Training, timm models: timm's training transform from ``timm.data.resolve_model_data_config`` +
  ``timm.data.create_transform(is_training=True)``.
- Training, transformers models: a random resized crop (to the processor's input size) and a horizontal flip on the
  PIL image, followed by the image processor (so resizing and normalisation are exactly the inference ones).

Images are decoded with :func:`hfvision.data.load_image` (EXIF orientation, RGB), the loader inference uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .data import read_image_source


def processor_input_size(processor, model=None) -> tuple[int, int]:
    """(height, width) the image processor produces (its crop size when it centre-crops)."""
    size = None
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        size = processor.crop_size
    elif getattr(processor, "size", None):
        size = processor.size
    if size is not None:
        size = dict(size) if not isinstance(size, int) else {"shortest_edge": size}
        if size.get("height") and size.get("width"):
            return int(size["height"]), int(size["width"])
        edge = size.get("shortest_edge") or size.get("longest_edge")
        if edge:
            return int(edge), int(edge)
    image_size = getattr(getattr(model, "config", None), "image_size", None)
    if image_size:
        return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)[:2]
    raise ValueError(f"cannot tell the input size of {type(processor).__name__}; set its size or crop_size")


def build_transforms(
    model, processor, image_column: str, label_column: str, augment: bool = True
) -> tuple[Callable[[dict], dict], Callable[[dict], dict]]:
    """``(train_transform, eval_transform)`` for ``datasets.Dataset.with_transform``.

    Each takes a batch ``{image_column: [...], label_column: [...]}`` of undecoded images and returns
    ``{"pixel_values": [tensor CxHxW, ...], "labels": [int, ...]}``.

    >>> train_tf, eval_tf = build_transforms(model, processor, "image", "label")
    >>> train_ds = data.train.with_transform(train_tf)
    """
    from ...data.image_io import load_image

    def evaluate_pixels(images) -> list:
        return list(processor(images=images, return_tensors="pt")["pixel_values"])

    if not augment:
        train_pixels = evaluate_pixels
    elif getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper":
        import timm.data

        # The saved pretrained_cfg (config.json) is the model's preprocessing config: the image processor reads it,
        # whereas the timm module built by TimmWrapper carries timm's default cfg for the architecture.
        data_config = timm.data.resolve_model_data_config(
            model.timm_model, pretrained_cfg=getattr(model.config, "pretrained_cfg", None)
        )
        timm_train = timm.data.create_transform(**data_config, is_training=True)

        def train_pixels(images) -> list:
            return [timm_train(image) for image in images]
    else:
        from torchvision.transforms import v2

        augmentation = v2.Compose(
            [
                v2.RandomResizedCrop(processor_input_size(processor, model), scale=(0.6, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )

        def train_pixels(images) -> list:
            return evaluate_pixels([augmentation(image) for image in images])

    def make(pixels: Callable[[list], list]) -> Callable[[dict], dict]:
        def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            images = [load_image(read_image_source(value)) for value in batch[image_column]]
            return {"pixel_values": pixels(images), "labels": list(batch[label_column])}

        return transform

    return make(train_pixels), make(evaluate_pixels)


def collate(examples: list[dict]) -> dict:
    """Stack transformed examples into a ``{"pixel_values", "labels"}`` batch."""
    import torch

    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long),
    }
