"""Loading a base classifier for a label set, and the per-architecture LoRA table.

Label handling: when the dataset's label names are the base model's (in any order, case-insensitive), the model's
mapping and trained head are kept and the dataset is renumbered to match. Otherwise the head is re-initialised for
the new labels (``ignore_mismatched_sizes=True`` when the sizes differ, an explicit re-initialisation when they are
equal) and one INFO line says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...utils.logging import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class ArchitectureSpec:
    """What LoRA adapts in one architecture, and the classifier head trained in full (PEFT ``modules_to_save``).

    Names are matched the PEFT way (a module whose qualified name equals or ends with ``.<name>``).
    """

    lora_target_modules: tuple[str, ...]
    head_modules: tuple[str, ...]


# transformers ``model_type`` -> spec. Attention query/value projections are the usual LoRA targets for vision
# transformers; both the transformers 5 names (q_proj/v_proj) and the 4.x names (query/value) are listed, and only
# the names present in the loaded model are used.
_QV = ("q_proj", "v_proj", "query", "value")
ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "vit": ArchitectureSpec(_QV, ("classifier",)),
    "deit": ArchitectureSpec(_QV, ("classifier", "cls_classifier", "distillation_classifier")),
    "beit": ArchitectureSpec(_QV, ("classifier",)),
    "dinov2": ArchitectureSpec(_QV, ("classifier",)),
    "swin": ArchitectureSpec(_QV, ("classifier",)),
    "convnext": ArchitectureSpec(("pwconv1", "pwconv2"), ("classifier",)),
}

# timm architecture name prefix -> spec; the head is found with timm's ``get_classifier()``.
TIMM_ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "resnet": ArchitectureSpec(("conv1", "conv2", "conv3"), ()),
    "vit_": ArchitectureSpec(("qkv",), ()),
    "convnext": ArchitectureSpec(("fc1", "fc2"), ()),
    "efficientnet": ArchitectureSpec(("conv_pw", "conv_pwl"), ()),
}


@dataclass
class LoadedClassifier:
    """A base model prepared for a label set, its image processor, and what happened to the head."""

    model: Any
    processor: Any
    labels: list[str]  # label names in id order (the model's order when its head was kept)
    base_labels: list[str]
    head_reinitialised: bool
    is_timm: bool


def is_timm_model(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper"


def load_classifier(
    model_name_or_path: str,
    labels: list[str],
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedClassifier:
    """Load ``model_name_or_path`` with a classification head for ``labels`` and its image processor.

    >>> loaded = load_classifier("path/to/tiny-vit", ["female", "male"])
    >>> loaded.head_reinitialised
    False
    """
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(model_name_or_path, **kwargs)
    except OSError as err:
        raise ValueError(f"cannot load a model config from {model_name_or_path!r}: {err}") from err
    is_timm = config.model_type == "timm_wrapper"
    if is_timm:
        _fix_timm_num_classes(config, model_name_or_path)
    base_labels = [str(config.id2label[i]) for i in sorted(config.id2label)] if config.id2label else []

    same_labels = sorted(x.lower() for x in base_labels) == sorted(x.lower() for x in labels)
    if same_labels:  # keep the model's ids and spelling; the data is renumbered to match
        ordered = list(base_labels)
    else:
        ordered = list(labels)
    config.id2label = dict(enumerate(ordered))
    config.label2id = {name: i for i, name in enumerate(ordered)}
    if hasattr(config, "num_labels") and config.num_labels != len(ordered):
        config.num_labels = len(ordered)
        config.id2label = dict(enumerate(ordered))
        config.label2id = {name: i for i, name in enumerate(ordered)}

    model = AutoModelForImageClassification.from_pretrained(
        model_name_or_path, config=config, ignore_mismatched_sizes=not same_labels, **kwargs
    )
    if not same_labels:
        shown = ", ".join(base_labels[:6]) + (", ..." if len(base_labels) > 6 else "")
        logger.info(
            "labels [%s] differ from %s's head (%d labels: %s): the classifier head is re-initialised for %d labels",
            ", ".join(ordered),
            model_name_or_path,
            len(base_labels),
            shown or "none",
            len(ordered),
        )
        if len(base_labels) == len(ordered):  # same shape: from_pretrained kept the old head, reset it explicitly
            with torch.no_grad():
                for module in head_modules(model).values():
                    _reset_linear_layers(module, getattr(config, "initializer_range", None) or 0.02)
    else:
        logger.info("labels match %s's head: keeping its trained classifier", model_name_or_path)
    try:
        processor = AutoImageProcessor.from_pretrained(model_name_or_path, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        hint = "its config.json needs timm's pretrained_cfg" if is_timm else "it needs a preprocessor_config.json"
        raise ValueError(f"no image processor found for {model_name_or_path!r} ({hint}): {err}") from err
    return LoadedClassifier(model, processor, ordered, base_labels, not same_labels, is_timm)


def _fix_timm_num_classes(config, source) -> None:
    # timm's save_for_hf can record num_classes inside model_args; TimmWrapper passes num_classes again, and
    # timm.create_model fails with "got multiple values for keyword argument 'num_classes'".
    model_args = getattr(config, "model_args", None)
    if isinstance(model_args, dict) and "num_classes" in model_args:
        model_args = dict(model_args)
        dropped = model_args.pop("num_classes")
        config.model_args = model_args
        logger.info("%s: ignoring model_args.num_classes=%s (the label count comes from the data)", source, dropped)


def _reset_linear_layers(module, std: float) -> None:
    import torch

    for layer in [module, *module.modules()]:
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)


def head_modules(model) -> dict[str, Any]:
    """Qualified name -> module of the classifier head (trained in full in LoRA mode)."""
    named = dict(model.named_modules())
    if is_timm_model(model):
        head = model.timm_model.get_classifier()
        return {name: m for name, m in named.items() if m is head}
    spec = ARCHITECTURES.get(model.config.model_type)
    names = spec.head_modules if spec else ("classifier", "head", "fc")
    found = {name: named[name] for name in names if name in named}
    if not found:
        raise ValueError(
            f"cannot find the classifier head of {type(model).__name__} (looked for modules named "
            f"{', '.join(names)}); it needs one to be fine-tuned here"
        )
    return dict(list(found.items())[:1]) if not spec else found


def architecture_spec(model) -> ArchitectureSpec:
    """The LoRA spec of ``model``: from the tables above, else every Linear (or Conv2d) layer outside the head."""
    import torch

    names = dict(model.named_modules())
    suffixes = {n.rsplit(".", 1)[-1] for n in names}
    spec = None
    if is_timm_model(model):
        arch = model.config.architecture
        spec = next((s for prefix, s in TIMM_ARCHITECTURES.items() if arch.startswith(prefix)), None)
        heads = tuple(head_modules(model))
    else:
        spec = ARCHITECTURES.get(model.config.model_type)
        heads = tuple(n for n in spec.head_modules if n in names) if spec else tuple(head_modules(model))
    targets = tuple(t for t in spec.lora_target_modules if t in suffixes) if spec else ()
    if not targets:
        # Fallback: every Linear layer outside the head, or every Conv2d layer for convolution-only backbones.
        inside_head = {n for h in heads for n, _ in model.get_submodule(h).named_modules(prefix=h)}
        for kind in (torch.nn.Linear, torch.nn.Conv2d):
            found = {n.rsplit(".", 1)[-1] for n, m in names.items() if isinstance(m, kind) and n not in inside_head}
            if found:
                break
        targets = tuple(sorted(found))
        logger.info(
            "no LoRA table entry for %s: adapting every %s layer outside the head (%s)",
            type(model).__name__,
            kind.__name__,
            ", ".join(targets),
        )
    return ArchitectureSpec(targets, heads)


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None):
    """Wrap ``model`` in a PEFT LoRA model; the classifier head is trained in full (``modules_to_save``).

    >>> peft_model = add_lora(model, r=8)
    >>> peft_model.print_trainable_parameters()
    """
    from peft import LoraConfig, get_peft_model

    spec = architecture_spec(model)
    targets = list(target_modules or spec.lora_target_modules)
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, modules_to_save=list(spec.head_modules)
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA on %s (r=%d), head %s trained in full: %d of %d parameters trainable (%.2f%%)",
        ", ".join(targets),
        r,
        ", ".join(spec.head_modules),
        trainable,
        total,
        100 * trainable / total,
    )
    return peft_model


def frozen_batch_norms(peft_model) -> list:
    """BatchNorm layers of a LoRA model outside its fully trained modules, to keep in eval mode while training.

    Their running statistics belong to the frozen base model: updating them would change the merged model in a way
    the adapter file does not record (base + adapter would then differ from the merged weights).
    """
    import torch

    trained = [name for name, m in peft_model.named_modules() if type(m).__name__ == "ModulesToSaveWrapper"]
    norms = [
        m
        for name, m in peft_model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(name.startswith(t) for t in trained)
    ]
    if norms:
        logger.info(
            "LoRA: keeping the running statistics of %d BatchNorm layers frozen (part of the base model)", len(norms)
        )
    return norms
