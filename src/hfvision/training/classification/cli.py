"""``hfvision train classifier``: flags generated from [`ImageClassificationConfig`], the HfArgumentParser way.

``hfvision.cli.train`` calls :func:`add_arguments` on its ``classifier`` subparser and :func:`run` as the handler.

Every dataclass field becomes ``--field_name`` / ``--field-name`` (plus aliases such as ``--model``, ``--data``,
``--epochs``), with transformers' own ``HfArgumentParser`` rules. Generating them imports transformers (seconds), so
they are added only when the ``classifier`` subparser itself parses or prints help: ``hfvision --help`` stays fast.
``--config FILE.yaml`` supplies defaults for any field; flags given on the command line win over it.
``--push-to-hub [REPO]`` sets ``push_to_hub`` and, with a value, ``hub_model_id``.

Example::

    hfvision train classifier --model rizvandwiki/gender-classification --data faces/ --output-dir out \\
        --task gender-classification --epochs 3 --lora --push-to-hub me/my-gender-model
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from typing import Any

DESCRIPTION = (
    "Fine-tune an image classifier (transformers or timm) on an imagefolder, a save_to_disk dataset or a Hub "
    "dataset, and save (or push) it as a pipeline repo with metrics and a model card."
)
_HANDLED_HERE = {"push_to_hub"}  # fields whose flags this module defines itself
# TrainingArguments fields listed with the classifier options in --help (the rest get their own group)
_COMMON_TRAINER_FIELDS = {
    "output_dir", "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "seed",
    "resume_from_checkpoint", "hub_model_id", "hub_private_repo", "report_to",
}  # fmt: skip
USAGE = (
    "%(prog)s --model MODEL --data DATA --output-dir OUT [--task TASK] [--epochs N] [--lora] "
    "[--push-to-hub [REPO]] [--config YAML] [more options, see below]"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Install the ``classifier`` flags on ``parser`` (generated lazily, on first parse or help)."""
    parser.description = parser.description or DESCRIPTION
    parser.usage = parser.usage or USAGE
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="YAML file of option values (field names as keys); command-line flags win")  # fmt: skip
    parser.add_argument(
        "--push-to-hub", "--push_to_hub", dest="push_to_hub", nargs="?", const=True, default=False, metavar="REPO",
        help="push the pipeline repo to the Hub at the end (REPO sets hub_model_id, e.g. user/my-classifier)",
    )  # fmt: skip
    base = type(parser)
    if getattr(base, "_hfvision_lazy", False):
        return

    class LazyDataclassParser(base):  # the subparser's own class, plus lazy flag generation
        _hfvision_lazy = True

        def parse_known_args(self, args=None, namespace=None):
            _generate_flags(self)
            args = list(args) if args is not None else None
            if args is not None:
                _apply_yaml_defaults(self, args)
            return super().parse_known_args(args, namespace)

        def format_help(self):
            _generate_flags(self)
            return super().format_help()

        def format_usage(self):
            _generate_flags(self)
            return super().format_usage()

    LazyDataclassParser.__name__ = LazyDataclassParser.__qualname__ = f"Lazy{base.__name__}"
    parser.__class__ = LazyDataclassParser


def _generate_flags(parser: argparse.ArgumentParser) -> None:
    if getattr(parser, "_hfvision_generated", False):
        return
    from typing import get_type_hints

    from transformers import HfArgumentParser, TrainingArguments

    from .config import ImageClassificationConfig

    parser._hfvision_generated = True
    hints = get_type_hints(ImageClassificationConfig)
    own = set(ImageClassificationConfig.__annotations__)
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    ours = parser.add_argument_group("classifier options (model, data, labels, LoRA; changed Trainer defaults)")
    trainer = parser.add_argument_group("transformers.TrainingArguments (all other Trainer options)")
    for f in dataclasses.fields(ImageClassificationConfig):
        if not f.init or f.name in _HANDLED_HERE:
            continue
        f = copy.copy(f)  # HfArgumentParser rewrites field.type; keep the class's fields untouched
        f.type = hints[f.name]
        group = ours if f.name in own or f.name in _COMMON_TRAINER_FIELDS or f.name not in inherited else trainer
        HfArgumentParser._parse_dataclass_field(group, f)


def _apply_yaml_defaults(parser: argparse.ArgumentParser, args: list[str]) -> None:
    path = None
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    if path is None:
        return
    import yaml

    from .config import ImageClassificationConfig

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    known = {f.name for f in dataclasses.fields(ImageClassificationConfig) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}; see `hfvision train classifier --help`")
    parser.set_defaults(**values)


def config_from_args(args: argparse.Namespace):
    """Build the [`ImageClassificationConfig`] from parsed arguments (only its fields are read)."""
    from .config import ImageClassificationConfig

    values: dict[str, Any] = {}
    for f in dataclasses.fields(ImageClassificationConfig):
        if f.init and hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    push = values.get("push_to_hub", False)
    if isinstance(push, str):
        if push.lower() in ("true", "1", "yes"):
            push = True
        elif push.lower() in ("false", "0", "no"):
            push = False
        else:
            values["hub_model_id"] = push
            push = True
    values["push_to_hub"] = bool(push)
    return ImageClassificationConfig(**values)


def run(args: argparse.Namespace) -> int:
    """Handler of ``hfvision train classifier``: train, evaluate, save (and push); prints a summary."""
    from .trainer import train_classifier

    config = config_from_args(args)
    result = train_classifier(config)
    report = result.report
    print(f"validation: {report['num_samples']} images, accuracy {report['accuracy']:.4f}, "
          f"macro F1 {report['f1_macro']:.4f} (after {result.global_step} steps)")  # fmt: skip
    width = max(len(name) for name in report["per_class"])
    for name, scores in report["per_class"].items():
        print(f"  {name:<{width}}  precision {scores['precision']:.4f}  recall {scores['recall']:.4f}  "
              f"support {scores['support']}")  # fmt: skip
    for group, scores in report.get("per_group", {}).items():
        print(f"  group {group}: accuracy {scores['accuracy']:.4f} ({scores['num_samples']} images)")
    print(f"pipeline saved to {result.output_dir} (metrics.json, confusion_matrix.png, README.md)")
    if result.repo_id:
        print(f"pushed to the Hub: {result.repo_id}")
    return 0
