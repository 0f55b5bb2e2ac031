"""``--dataset_name`` (diffusers' SDXL LoRA script): a Hugging Face image dataset written out once as the folder of
images with ``name.txt`` caption sidecars that the trainer reads, so everything downstream (captions, sessions,
resume checks) is the same as with ``--instance_data_dir``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ...utils.logging import get_logger

logger = get_logger(__name__)


def dataset_cache_root() -> Path:
    """``$HFVISION_CACHE/datasets`` (``~/.cache/hfvision/datasets`` by default)."""
    return Path(os.environ.get("HFVISION_CACHE") or Path.home() / ".cache" / "hfvision") / "datasets"


def materialize_image_dataset(
    name: str,
    config_name: str | None = None,
    image_column: str = "image",
    caption_column: str | None = None,
    repeats: int = 1,
    cache_dir: str | None = None,
) -> Path:
    """Write the ``train`` split of dataset ``name`` as ``NNNNN.png`` (+ ``NNNNN.txt`` from ``caption_column``),
    each image ``repeats`` times; returns the folder (reused when it already exists)."""
    from datasets import load_dataset

    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    dataset = load_dataset(name, config_name, cache_dir=cache_dir, split="train")
    for column in (image_column, caption_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"dataset {name!r} has no column {column!r}; its columns are {', '.join(dataset.column_names)}"
            )
    key = hashlib.sha256(
        repr((name, config_name, dataset._fingerprint, image_column, caption_column, repeats)).encode()
    )
    folder = dataset_cache_root() / f"{name.replace('/', '--')}-{key.hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    index = 0
    for row in dataset:
        for _ in range(repeats):
            row[image_column].convert("RGB").save(tmp / f"{index:05d}.png")
            if caption_column is not None:
                (tmp / f"{index:05d}.txt").write_text(str(row[caption_column]), encoding="utf-8")
            index += 1
    try:
        os.replace(tmp, folder)  # another process may have written it first: then theirs is used
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("dataset %s: %d images written to %s", name, index, folder)
    return folder
