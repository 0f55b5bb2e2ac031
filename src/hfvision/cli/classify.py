"""``hfvision classify``: classify image files into a JSONL file (a dataset into parquet shards with ``--dataset``, see
:mod:`._classify_dataset`); data-parallel under ``accelerate launch``.

    hfvision classify --task gender-classification --model rizvandwiki/gender-classification \\
        --input photos/ --output preds.jsonl --batch-size 16 --faces
    accelerate launch --num_processes 2 --cpu -m hfvision.cli.main classify --model M --input 'photos/*.jpg' ...
"""

from __future__ import annotations

import argparse

from ..pipelines.registry import DEFAULT_TASK
from . import _classify_dataset
from ._checks import CLASSIFY_TASKS, USAGE, CLIError, non_negative_float, positive_int


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"--batch-size {value!r}: use a positive integer or 'auto'")
    return size


def check(args: argparse.Namespace) -> None:
    """Every argument, before the model loads: inputs exist, the output is new, the model folder is complete."""
    from ..inference.inputs import collect_inputs
    from . import _checks

    if args.dataset is not None:
        try:
            _classify_dataset.check(args)
        except ValueError as err:  # a flag combination: a usage error
            raise CLIError(str(err), USAGE) from None
    else:
        if not args.input or not args.output:
            raise CLIError(
                "pass --input FILES and --output FILE.jsonl (or --dataset NAME_OR_DIR and --output-dir DIR)", USAGE
            )
        try:
            args.files = collect_inputs(args.input)
        except FileNotFoundError as err:
            raise CLIError(f"--input {err}") from None
        except ValueError as err:
            raise CLIError(f"--input: {err}") from None
        _checks.output_file(args.output, "--output", args.overwrite)
    if args.model is None:
        from ..pipelines.registry import TASKS

        if "default" not in TASKS.get(args.task, {}):
            raise CLIError(f"--task {args.task} has no default model; pass --model <Hub id or folder>", USAGE)
        repo, revision = TASKS[args.task]["default"]["model"]
        _checks.model_source(repo, "--model (default)", "classifier", revision=args.revision or revision)
    else:
        kind = _checks.model_source(args.model, "--model", "classifier", args.allow_pickle, args.revision)
        if args.verify and kind == "folder":
            raise CLIError(
                f"--verify checks downloads against the Hub's hashes; {args.model} is a local folder, drop --verify",
                USAGE,
            )
    _checks.check_device(args.device)


def run(args: argparse.Namespace) -> int:
    from ..data.image_io import ImageLoadError
    from ..inference.classify import classify_files

    # what files and datasets share: the model, how it runs, and the options of its loading
    common = {
        "task": args.task,
        "model": args.model,
        "batch_size": args.batch_size,
        "top_k": args.top_k,
        "device": args.device,
        "progress": not args.no_progress,
        "revision": args.revision,
        "verify": args.verify,
        "allow_pickle": args.allow_pickle,
        "trust_remote_code": args.trust_remote_code,
    }
    if args.use_test_size:
        common["use_test_size"] = True
    if args.dataset is not None:
        return _classify_dataset.run(args, common)
    try:
        records = classify_files(
            getattr(args, "files", None) or args.input,
            output=args.output,
            faces=args.faces,
            face_margin=args.face_margin,
            strict=args.strict,
            **common,
        )
    except ImageLoadError as err:
        raise CLIError(
            f"{err} (--strict stops at the first unreadable image; without it the file is skipped)"
        ) from None
    from accelerate import PartialState

    if PartialState().is_main_process:
        errors = sum("error" in r for r in records)
        skipped = f", {errors} unreadable (skipped, see the warnings)" if errors else ""
        print(f"classified {len(records) - errors} image(s){skipped} -> {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify image files into a JSONL file (data-parallel under `accelerate launch`)",
        description="Classify images (a folder, glob or files) and write one JSON line per input, in input order. "
        "Unreadable files are skipped with a warning (and an 'error' field in their line); --strict stops instead.",
    )
    p.add_argument("--task", default=DEFAULT_TASK, choices=CLASSIFY_TASKS, help="what to predict")
    p.add_argument("--model", default=None, help="Hub id or local folder (default: the task's default model)")
    p.add_argument("--input", nargs="+", help="folder(s), glob(s) or image file(s)")
    p.add_argument("--output", help="JSONL file to write (atomically; must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    _classify_dataset.add_arguments(p)
    p.add_argument("--batch-size", type=_batch_size, default=8, help="images per forward pass, or 'auto'")
    p.add_argument(
        "--top-k", type=positive_int, default=None, help="labels per image (default: all of the model's labels)"
    )
    p.add_argument("--faces", action="store_true", help="face-first: classify each detected face")
    p.add_argument(
        "--face-margin",
        type=non_negative_float,
        default=None,
        help="context around faces, a fraction of the face size (default: 0.25)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--use-test-size", action="store_true", help="timm models: evaluate at the model's test size")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu, or accelerate's)")
    p.add_argument("--verify", action="store_true", help="check downloaded files against the Hub's sha256")
    p.add_argument("--allow-pickle", action="store_true", help="also load pickle (.bin) weights: trusted sources only")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped in the model repository")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, check=check)
