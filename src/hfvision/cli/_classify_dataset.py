"""``hfvision classify --dataset``: a ``datasets`` dataset into resumable parquet shards (see
:func:`hfvision.inference.classify_dataset`). Kept apart from :mod:`.classify`, which only hooks it in:
:func:`add_arguments` in ``register`` and :func:`run` when ``--dataset`` is given.

    hfvision classify --model M --dataset user/faces --split test --output-dir preds/    # rerun to resume
    accelerate launch --multi_gpu --num_processes 2 -m hfvision.cli.main classify --model M --dataset DIR ...
"""

from __future__ import annotations

import argparse

from ._checks import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=None,
        help="instead of --input: a datasets dataset (Hub id, imagefolder / parquet folder, parquet file); "
        "writes sharded parquet to --output-dir, resumable",
    )
    p.add_argument("--split", default=None, help="--dataset: the split (needed when there are several)")
    p.add_argument("--image-column", default=None, help="--dataset: the image column (default: the only one)")
    p.add_argument("--id-column", default=None, help="--dataset: column copied into 'id' (default: path or row)")
    p.add_argument("--output-dir", default=None, help="--dataset: folder of part-*.parquet shards (rerun to resume)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="--dataset: rows per shard file")
    p.add_argument("--streaming", action="store_true", help="--dataset: read as a stream (large Hub datasets)")


def check(args: argparse.Namespace) -> None:
    """Flag combinations, before anything loads."""
    if args.input or args.output or args.faces:
        flag = "--input" if args.input else "--output" if args.output else "--faces"
        raise ValueError(f"{flag} does not go with --dataset; write the predictions with --output-dir DIR")
    if not args.output_dir:
        raise ValueError("--dataset needs --output-dir DIR (sharded parquet; rerun with it to resume)")


def run(args: argparse.Namespace, common: dict) -> int:
    """Classify ``--dataset``; ``common`` holds what ``classify`` passes for files too (model, batch size, device,
    loading options)."""
    from ..inference.dataset import classify_dataset

    check(args)
    summary = classify_dataset(
        args.dataset,
        output_dir=args.output_dir,
        split=args.split,
        image_column=args.image_column,
        id_column=args.id_column,
        streaming=args.streaming,
        shard_size=args.shard_size,
        **common,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(
            f"classified {summary.num_rows} row(s) of {args.dataset} into {summary.num_shards} shard(s) "
            f"({summary.skipped} already written) -> {args.output_dir}"
        )
    return 0
