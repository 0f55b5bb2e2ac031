"""What timm checkpoints loaded through transformers' TimmWrapper miss: readable ImageNet labels and test-size eval.

- Labels: TimmWrapper names classes from the checkpoint's ``label_names``; timm checkpoints often store WordNet
  synsets there (``n01440764``), and models built with ``num_labels`` get ``LABEL_0``. :func:`readable_labels`
  maps both to timm's ImageNet descriptions ("tench, Tinca tinca") when the class count is an ImageNet subset.
- Test size: timm models are often evaluated at a larger ``test_input_size`` (resnet18.a1_in1k: trained at 224,
  73.2% top-1 at 288 vs 71.5% at 224) with ``test_crop_pct``; :func:`test_size_image_processor` builds the
  processor for that setting from the model's ``pretrained_cfg``.

Copied with the custom pipeline code by ``save_pretrained``: timm is imported inside ``try`` blocks only.
"""

from __future__ import annotations

import re
from typing import Any

_SYNSET = re.compile(r"^n\d{8}$")
_GENERIC = re.compile(r"^LABEL_\d+$")


def is_timm_model(model: Any) -> bool:
    """Whether ``model`` is a transformers TimmWrapper model."""
    return getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper"


def readable_labels(id2label: dict[int, str], num_labels: int) -> dict[int, str] | None:
    """ImageNet descriptions for synset or generic labels, or ``None`` when the labels are already readable.

    >>> readable_labels({0: "n01440764", 1: "n01443537"}, 2)
    {0: 'tench, Tinca tinca', 1: 'goldfish, Carassius auratus'}
    """
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
    except ImportError:
        return None
    names = [id2label.get(i, "") for i in range(num_labels)]
    if names and all(_SYNSET.match(n) for n in names):
        info = ImageNetInfo()
        try:
            return {i: info.label_name_to_description(n) for i, n in enumerate(names)}
        except KeyError:  # a synset timm does not know: keep the ids
            return None
    if names and all(_GENERIC.match(n) for n in names):
        subset = infer_imagenet_subset({"num_classes": num_labels})
        if subset:
            return dict(enumerate(ImageNetInfo(subset).label_descriptions()))
    return None


def apply_readable_labels(model: Any) -> bool:
    """Replace synset/generic labels of a timm ``model`` in place (config ``id2label``/``label2id``); True if changed."""
    config = model.config
    labels = readable_labels(dict(config.id2label), config.num_labels)
    if labels is None:
        return False
    config.id2label = labels
    config.label2id = {v: k for k, v in labels.items()} if len(set(labels.values())) == len(labels) else None
    return True


def test_size_image_processor(model: Any, image_processor: Any = None) -> Any:
    """A ``TimmWrapperImageProcessor`` for the model's ``test_input_size`` and ``test_crop_pct``.

    Raises:
        `ValueError`: the model is not a timm model, or its ``pretrained_cfg`` has no ``test_input_size``.
    """
    if not is_timm_model(model):
        raise ValueError(
            f"use_test_size=True needs a timm checkpoint (TimmWrapper); {type(model).__name__} has no test size"
        )
    cfg = dict(getattr(model.config, "pretrained_cfg", None) or {})
    if not cfg.get("test_input_size"):
        raise ValueError(
            f"use_test_size=True: {model.config.architecture!r} has no test_input_size in its pretrained_cfg; "
            "drop use_test_size or pass an image_processor with the size you want"
        )
    cfg["input_size"] = tuple(cfg["test_input_size"])
    if cfg.get("test_crop_pct"):
        cfg["crop_pct"] = cfg["test_crop_pct"]
    cls = type(image_processor) if image_processor is not None else None
    if cls is None or not hasattr(image_processor, "val_transforms"):
        from transformers import TimmWrapperImageProcessor as cls
    return cls(pretrained_cfg=cfg, architecture=model.config.architecture)
