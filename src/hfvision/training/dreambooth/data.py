"""Instance and class images as a map-style dataset, and a sampler whose order is a pure function of (seed, epoch).

Exact resume depends on this module: the sampler yields ``(index, sample_seed)`` pairs computed from the seed and
the epoch only, and every random crop or flip is drawn from a generator seeded with ``sample_seed``. Nothing reads
the global RNGs, so skipping the first batches of an epoch (accelerate's ``skip_first_batches``) reproduces exactly
the batches an uninterrupted run would have seen, with any number of dataloader workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ...data import read_caption  # noqa: F401 - re-exported for the trainer
from ...utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (sorted, hidden files skipped); a clear error if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"instance_data_dir {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"instance_data_dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not files:
        raise ValueError(f"instance_data_dir {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


@dataclass
class ImageRecord:
    path: Path
    caption: str
    pixels: np.ndarray  # uint8 HWC, shorter side == resolution
    original_size: tuple[int, int]  # (height, width) before resizing


def load_records(paths: list[Path], captions: list[str], resolution: int) -> list[ImageRecord]:
    """Decode and resize every image once (DreamBooth sets are small); bad files raise naming the file."""
    from PIL import Image

    from ...data import load_image

    records = []
    for path, caption in zip(paths, captions):
        image = load_image(path)
        width, height = image.size
        scale = resolution / min(width, height)
        if scale != 1:
            size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        records.append(ImageRecord(path, caption, np.asarray(image, dtype=np.uint8).copy(), (height, width)))
    return records


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)`` for every dataset index, in an order that depends only on (seed, epoch).

    Every process builds the same sequence (accelerate then shards it by batches), and resuming mid-epoch only
    needs the epoch number and how many batches to skip.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.length)
        seeds = rng.integers(0, 2**62, size=self.length)
        yield from zip(order.tolist(), seeds.tolist())


class DreamBoothDataset(Dataset):
    """Pairs each instance image with a class image (prior preservation) in one item.

    Item ``i`` uses instance image ``i % num_instance`` and class image ``i % num_class``; the dataset is as long
    as the larger set. Keys are ``(index, sample_seed)`` pairs from [`EpochSampler`].

    Args:
        instance (`list[ImageRecord]`): subject photos with their captions.
        class_records (`list[ImageRecord]`): class images (empty without prior preservation).
        resolution (`int`): square training size.
        center_crop (`bool`): centre crops instead of random ones.
        random_flip (`bool`): flip horizontally with probability 0.5.
    """

    def __init__(self, instance: list[ImageRecord], class_records: list[ImageRecord], resolution: int,
                 center_crop: bool = False, random_flip: bool = False):  # fmt: skip
        if not instance:
            raise ValueError("no instance images")
        self.instance, self.class_records = instance, class_records
        self.resolution, self.center_crop, self.random_flip = resolution, center_crop, random_flip
        self.latent_params: dict[int, torch.Tensor] | None = None  # image id -> VAE distribution parameters

    def __len__(self) -> int:
        return max(len(self.instance), len(self.class_records))

    @property
    def records(self) -> list[ImageRecord]:
        """All images; a record's position here is its image id."""
        return self.instance + self.class_records

    def has_random_crops(self) -> bool:
        return not self.center_crop and any(r.pixels.shape[0] != r.pixels.shape[1] for r in self.records)

    def crop_box(self, record: ImageRecord, rng: np.random.Generator | None) -> tuple[int, int]:
        height, width = record.pixels.shape[:2]
        if rng is None or self.center_crop:
            return (height - self.resolution) // 2, (width - self.resolution) // 2
        return int(rng.integers(0, height - self.resolution + 1)), int(rng.integers(0, width - self.resolution + 1))

    def example(self, image_id: int, rng: np.random.Generator | None) -> dict:
        """One image as a training example; ``rng=None`` gives the deterministic (centre, unflipped) view."""
        record = self.records[image_id]
        top, left = self.crop_box(record, rng)
        flip = bool(rng is not None and self.random_flip and rng.random() < 0.5)
        example = {"image_id": image_id, "caption": record.caption, "original_size": record.original_size,
                   "crop_top_left": (top, left)}  # fmt: skip
        if self.latent_params is not None:
            example["latent_params"] = self.latent_params[image_id]
            return example
        pixels = record.pixels[top : top + self.resolution, left : left + self.resolution]
        if flip:
            pixels = pixels[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()
        example["pixel_values"] = tensor / 127.5 - 1.0
        return example

    def __getitem__(self, key) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(sample_seed) if sample_seed is not None else None
        item = {"instance": self.example(index % len(self.instance), rng)}
        if self.class_records:
            class_id = len(self.instance) + index % len(self.class_records)
            item["class"] = self.example(class_id, rng)
        return item


def collate(items: list[dict]) -> dict:
    """Instance examples first, then class examples, in one batch (``num_instance`` tells them apart)."""
    examples = [it["instance"] for it in items] + [it["class"] for it in items if "class" in it]
    batch = {
        "captions": [e["caption"] for e in examples],
        "image_ids": torch.tensor([e["image_id"] for e in examples]),
        "original_sizes": torch.tensor([e["original_size"] for e in examples]),
        "crop_top_left": torch.tensor([e["crop_top_left"] for e in examples]),
        "num_instance": torch.tensor(len(items)),
    }
    key = "latent_params" if "latent_params" in examples[0] else "pixel_values"
    batch[key] = torch.stack([e[key] for e in examples])
    return batch
