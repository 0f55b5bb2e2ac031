"""``hfvision train dreambooth ...`` and ``hfvision train classifier ...``.

``dreambooth`` takes the same flags as ``examples/train_dreambooth.py`` (generated from
:class:`hfvision.training.DreamBoothConfig` by :func:`hfvision.utils.config_parser.parse_config`; ``--config
run.yaml`` sets any option and flags win). Its flags are generated only when it runs, so ``hfvision --help`` stays fast. ``classifier`` comes from
:mod:`hfvision.training.classification.cli`.

Example::

    hfvision train dreambooth --pretrained_model_name_or_path sd15 --instance_data_dir photos/ \\
        --instance_prompt "a photo of sks dog" --with_prior_preservation --class_prompt "a photo of dog"
    accelerate launch -m hfvision.cli.main train dreambooth --config run.yaml   # multi-GPU
"""

from __future__ import annotations

import argparse

from ._checks import CLIError


def check_dreambooth(args: argparse.Namespace) -> None:
    """Parse the flags into a config and check the output folder, before any heavy library loads."""
    from ..training.dreambooth.args import parser_options
    from ..training.dreambooth.config import DreamBoothConfig
    from ._config import parse_command

    argv = [a for a in args.extra_argv if a != "--overwrite"]
    config = args.config = parse_command(DreamBoothConfig, argv, "hfvision train dreambooth", **parser_options())
    if not (config.session or config.hub_session or config.resume_from_checkpoint):  # those resume on purpose
        from . import _checks

        _checks.output_folder(config.output_dir, "--output_dir", overwrite=len(argv) < len(args.extra_argv))


def run_dreambooth(args: argparse.Namespace) -> int:
    """Handler: train with the config :func:`check_dreambooth` parsed, print where the results are."""
    from ..training.dreambooth.trainer import DreamBoothTrainer

    result = DreamBoothTrainer(args.config).train()
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


def _check_classifier(config) -> None:
    """Before any model or dataset loads: no other run's work in the output folder, the data and the model exist."""
    from pathlib import Path

    from ..training.classification.saving import check_output_dir
    from . import _checks

    try:
        check_output_dir(config)  # the trainer's own rule (resume / --overwrite_output_dir), checked up front
    except FileExistsError as err:
        raise CLIError(_checks.in_cli_words(str(err))) from None
    data = Path(config.data).expanduser()
    if not data.exists():
        if _checks.looks_like_path(config.data) or config.data.count("/") > 1:
            raise CLIError(f"--data {config.data}: no such folder")
        _checks.check_hub_model(config.data, "--data", "", repo_type="dataset")
    elif not data.is_dir():
        raise CLIError(f"--data {config.data} is a file; give an imagefolder or save_to_disk folder")
    _checks.model_source(config.model_name_or_path, "--model", "classifier", revision=config.model_revision)


def check_classifier(args: argparse.Namespace) -> None:
    """Parse the flags (`ImageClassificationConfig`), then :func:`_check_classifier`, before any model loads."""
    from ..training.classification import cli as classification_cli
    from ..training.classification.flags import flags_class
    from ._config import config_errors

    with config_errors(flags_class()):  # its field names are the config's: errors read in flag words
        args.config = classification_cli.parse_args(args.extra_argv)
    _check_classifier(args.config)


def run_classifier(args: argparse.Namespace) -> int:
    """Handler of ``hfvision train classifier``: train with the config :func:`check_classifier` parsed."""
    import sys

    from ..training.classification import cli as classification_cli

    config = args.config
    if not sys.stderr.isatty() and not any(
        a.startswith(("--disable_tqdm", "--disable-tqdm")) for a in args.extra_argv
    ):
        config.disable_tqdm = True  # bars only on terminals; Trainer then prints one line of metrics per log
    return classification_cli.train_and_report(config)


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.classification import cli as classification_cli  # light: the flags load when it runs
    from ._config import add_config_command

    train = sub.add_parser("train", help="fine-tune models: dreambooth (Stable Diffusion), classifier")
    kinds = train.add_subparsers(dest="train_command", metavar="KIND")
    add_config_command(
        kinds,
        "dreambooth",
        help="DreamBooth a Stable Diffusion model on photos of a subject (see `hfvision train dreambooth --help`)",
        description=None,
        run=run_dreambooth,
        check=check_dreambooth,
    )
    add_config_command(
        kinds,
        "classifier",
        help="fine-tune an image classifier (see `hfvision train classifier --help`)",
        description=classification_cli.DESCRIPTION,
        run=run_classifier,
        check=check_classifier,
    )
    train.set_defaults(func=lambda args: train.print_help() or 2)
