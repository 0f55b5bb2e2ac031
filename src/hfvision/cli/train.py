"""``hfvision train dreambooth ...`` and ``hfvision train classifier ...``.

``dreambooth`` takes the same flags as ``examples/train_dreambooth.py`` (generated from
:class:`hfvision.training.DreamBoothConfig` by ``HfArgumentParser``; ``--config run.yaml`` sets any option and flags
win). Its flags are generated only when it runs, so ``hfvision --help`` stays fast. ``classifier`` comes from
:mod:`hfvision.training.classification.cli`.

Example::

    hfvision train dreambooth --pretrained_model_name_or_path sd15 --instance_data_dir photos/ \\
        --instance_prompt "a photo of sks dog" --with_prior_preservation --class_prompt "a photo of dog"
    accelerate launch -m hfvision.cli.main train dreambooth --config run.yaml   # multi-GPU
"""

from __future__ import annotations

import argparse


class _PassThroughParser(argparse.ArgumentParser):
    """Hands every remaining argument to the handler, which parses them with the dataclass-generated parser."""

    def parse_known_args(self, args=None, namespace=None):
        namespace = namespace if namespace is not None else argparse.Namespace()
        namespace.train_argv = list(args or [])
        namespace.func = run_dreambooth
        return namespace, []


def run_dreambooth(args: argparse.Namespace) -> int:
    """Handler: parse the flags into a config, train, print where the results are."""
    from ..training.dreambooth.config import parse_dreambooth_args

    config = parse_dreambooth_args(args.train_argv, prog="hfvision train dreambooth")
    from ..training.dreambooth.trainer import DreamBoothTrainer

    result = DreamBoothTrainer(config).train()
    if _is_main_process():
        kind = "LoRA weights" if result.lora_weights else "pipeline"
        loss = f" (last loss {result.final_loss:.4f})" if result.final_loss is not None else ""
        print(f"trained {result.global_step} steps{loss}; {kind} in {result.output_dir}")
        if result.samples:
            print(f"validation images: {result.samples[0].parent}")
    return 0


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _classifier_unavailable(reason: str):
    def run(args: argparse.Namespace) -> int:
        raise ImportError(f"`hfvision train classifier` is unavailable: {reason}")

    return run


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune models: dreambooth (Stable Diffusion), classifier")
    kinds = train.add_subparsers(dest="train_command", metavar="KIND")
    dreambooth = kinds.add_parser(
        "dreambooth",
        add_help=False,
        help="DreamBooth a Stable Diffusion model on photos of a subject (see `hfvision train dreambooth --help`)",
    )
    dreambooth.__class__ = _PassThroughParser
    classifier = kinds.add_parser(
        "classifier", add_help=False, help="fine-tune an image classifier (see `hfvision train classifier --help`)"
    )
    try:
        from ..training.classification import cli as classification_cli
    except ImportError as err:  # written separately; dreambooth must work without it
        classifier.set_defaults(func=_classifier_unavailable(str(err)))
    else:
        classification_cli.add_arguments(classifier)
        classifier.set_defaults(func=classification_cli.run)
    train.set_defaults(func=lambda args: train.print_help() or 2)
