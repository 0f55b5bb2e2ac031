"""``hfvision train classifier``: flags generated from [`ImageClassificationConfig`] by
:func:`hfvision.utils.config_parser.parse_config` (``HfArgumentParser``'s flags).

``hfvision.cli.train`` registers the ``classifier`` subcommand with :func:`add_arguments`; when it runs, it calls
:func:`parse_args` (the flags come from ``flags.json``, a snapshot of the config's fields, so usage errors and
``--help`` answer before transformers and torch load), checks the paths and the model, then :func:`train_and_report`.

Every dataclass field becomes ``--field_name`` / ``--field-name`` (plus aliases such as ``--model``, ``--epochs``).
``--help`` lists the common options, ``--help-all`` every ``TrainingArguments`` one. ``--strict`` stops at the first
unreadable image (``--bad_images error``; by default each is skipped with a warning and counted). ``--config FILE.yaml`` supplies
defaults for any field; flags given on the command line win over it. ``--push-to-hub [REPO]`` sets ``push_to_hub``
and, with a value, ``hub_model_id``. An ``--output-dir`` holding another run's model or checkpoints is refused unless
``--resume_from_checkpoint latest`` or ``--overwrite_output_dir``.

Example::

    hfvision train classifier --model rizvandwiki/gender-classification --data faces/ --output-dir out \\
        --task gender-classification --epochs 3 --lora --push-to-hub me/my-gender-model
"""

from __future__ import annotations

import argparse

PROG = "hfvision train classifier"
DESCRIPTION = (
    "Fine-tune an image classifier (transformers or timm) on an imagefolder, a save_to_disk dataset or a Hub "
    "dataset, and save (or push) it as a pipeline repo with metrics and a model card. --help-all lists every "
    "transformers.TrainingArguments option."
)
USAGE = (
    "%(prog)s --model MODEL --data DATA --output-dir OUT [--task TASK] [--epochs N] [--lora] "
    "[--push-to-hub [REPO]] [--strict] [--config YAML] [options]"
)
#: options listed by --help; --help-all adds every other field (all of TrainingArguments)
VISIBLE = (
    "model_name_or_path",
    "task",
    "data",
    "validation_size",
    "image_column",
    "label_column",
    "max_train_samples",
    "augment",
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_save",
    "num_train_epochs",
    "output_dir",
    "learning_rate",
    "per_device_train_batch_size",
    "seed",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "push_to_hub",
    "hub_model_id",
    "trust_remote_code",
)
_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Prepare the ``classifier`` subparser: its arguments are handed to :func:`run`, which parses them."""
    parser.description = parser.description or DESCRIPTION
    parser.set_defaults(passthrough=True)


def _push_to_hub_value(argv: list[str]) -> list[str]:
    """``--push-to-hub REPO`` -> ``--push_to_hub true --hub_model_id REPO`` (a bare flag or a bool stays as is)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--push-to-hub", "--push_to_hub"):
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value, i = argv[i + 1], i + 1
            if value and value.lower() not in _BOOL_WORDS:
                out += ["--push_to_hub", "true", "--hub_model_id", value]
            else:
                out += ["--push_to_hub", value or "true"]
        else:
            out.append(arg)
        i += 1
    return out


def parse_args(argv: list[str] | None):
    """The [`ImageClassificationConfig`] of command-line arguments (flags, ``--config`` YAML, ``--push-to-hub``,
    ``--strict``). The flags come from :func:`~hfvision.training.classification.flags.flags_class`: usage errors
    and ``--help`` answer before transformers' ``TrainingArguments`` (and torch) load."""
    import dataclasses

    from ...utils.config_parser import STRICT_IMAGES, parse_config
    from .flags import flags_class

    parsed = parse_config(
        flags_class(),
        _push_to_hub_value(list(argv or [])),
        PROG,
        description=DESCRIPTION,
        usage=USAGE,
        visible=VISIBLE,
        switches=(STRICT_IMAGES,),
    )
    from .config import ImageClassificationConfig

    if isinstance(parsed, ImageClassificationConfig):
        return parsed
    return ImageClassificationConfig(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)})


def config_from_args(args: argparse.Namespace | list[str]):
    """The [`ImageClassificationConfig`] of a parsed ``hfvision train classifier`` command line (or of its argv)."""
    argv = args if isinstance(args, list) else getattr(args, "extra_argv", [])
    return parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Parse ``args.extra_argv`` (the classifier's flags), then :func:`train_and_report`. The ``hfvision`` command
    line (:mod:`hfvision.cli.train`) adds its checks of paths and models between the two."""
    config = parse_args(getattr(args, "extra_argv", []))
    return train_and_report(config)


def train_and_report(config) -> int:
    """Train, evaluate, save (and push) with ``config``; prints a summary."""
    import os

    if "HF_DATASETS_DISABLE_PROGRESS_BARS" not in os.environ:  # one bar: the training loop's
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        import datasets  # it reads the variable when imported, which may have happened already

        datasets.disable_progress_bars()
    from .trainer import train_classifier

    result = train_classifier(config)
    report = result.report
    print(
        f"validation: {report['num_samples']} images, accuracy {report['accuracy']:.4f}, "
        f"macro F1 {report['f1_macro']:.4f} (after {result.global_step} steps)"
    )
    width = max(len(name) for name in report["per_class"])
    for name, scores in report["per_class"].items():
        print(
            f"  {name:<{width}}  precision {scores['precision']:.4f}  recall {scores['recall']:.4f}  "
            f"support {scores['support']}"
        )
    for group, scores in report.get("per_group", {}).items():
        print(f"  group {group}: accuracy {scores['accuracy']:.4f} ({scores['num_samples']} images)")
    print(f"pipeline saved to {result.output_dir} (metrics.json, confusion_matrix.png, README.md)")
    if result.repo_id:
        print(f"pushed to the Hub: {result.repo_id}")
    return 0
