"""Classification throughput: ``classify_dataset`` (a ``datasets`` dataset -> parquet shards) vs ``classify_files``
(a folder of image files -> JSONL), on the same images and the same loaded pipeline.

``--count`` JPEG photos (``--size`` px) are written to a folder and to a parquet dataset (image bytes embedded). Runs:
files (classify_files on the folder), imagefolder (classify_dataset on the same folder: datasets lists the files,
hfvision decodes them) and parquet (classify_dataset on the parquet file). Dataset preparation (the Arrow cache) is
timed separately; the imagefolder run still includes datasets' own listing of the files (``load_dataset`` resolves
the data files on every call, most of that run's extra time). Prints images/s and the ratio to the files run.

    python benchmarks/classify_dataset.py [--model vit|resnet18] [--count 512] [--size 224] [--batch-size 32]

Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from serving import PHOTOS, build_model  # benchmarks/serving.py: the same photos and models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit", choices=("vit", "resnet18"))
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import torch

    import hfvision
    from hfvision.inference import classify_files
    from hfvision.inference.dataset import classify_dataset, load_image_dataset
    from hfvision.testing import sample_image

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "cache")
        task, model_dir = build_model(args.model, str(tmp / "model"))
        pipe = hfvision.pipeline(task, model=model_dir)
        folder = tmp / "images"
        folder.mkdir()
        photos = [sample_image(name) for name in PHOTOS]
        for i in range(args.count):  # distinct files: each photo rotated by a different angle
            photos[i % len(photos)].rotate(i).resize((args.size, args.size)).save(folder / f"{i:05d}.jpg", quality=90)
        parquet = tmp / "data.parquet"
        feature = datasets.Features({"image": datasets.Image()})
        files = sorted(str(p) for p in folder.iterdir())
        datasets.Dataset.from_dict({"image": files}, features=feature).cast_column(
            "image", datasets.Image()
        ).to_parquet(parquet)  # embeds the bytes
        pipe([p.resize((args.size, args.size)) for p in photos], batch_size=args.batch_size)  # warm-up
        common = dict(pipe=pipe, batch_size=args.batch_size, top_k=2, progress=False)
        timings = {}
        start = time.perf_counter()
        classify_files(folder, output=tmp / "files.jsonl", **common)
        timings["files (classify_files)"] = time.perf_counter() - start
        for name, source in (("imagefolder", folder), ("parquet", parquet)):
            start = time.perf_counter()
            load_image_dataset(source)  # prepares the Arrow cache, reused by the run below
            prepare = time.perf_counter() - start
            start = time.perf_counter()
            classify_dataset(source, output_dir=tmp / name, shard_size=args.shard_size, **common)
            timings[f"{name} (classify_dataset)"] = time.perf_counter() - start
            timings[f"  {name}: dataset preparation"] = prepare
    base = args.count / timings["files (classify_files)"]
    print(
        f"{args.model}, {args.count} JPEGs of {args.size}px, batch {args.batch_size}, {args.threads} torch thread(s)"
    )
    print(f"{'run':<34}{'seconds':>9}{'images/s':>10}{'vs files':>10}")
    for name, seconds in timings.items():
        if name.startswith("  "):
            print(f"{name:<34}{seconds:>9.2f}")
        else:
            rate = args.count / seconds
            print(f"{name:<34}{seconds:>9.2f}{rate:>10.0f}{rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
