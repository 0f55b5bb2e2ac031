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
from ...data.image_io import IMAGE_EXTENSIONS
from ...utils.logging import get_logger

logger = get_logger(__name__)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (sorted, hidden files skipped); a clear error if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"instance_data_dir {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"instance_data_dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not files:
        raise ValueError(f"instance_data_dir {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


@dataclass
class ImageRecord:
    path: Path
    caption: str
    pixels: np.ndarray  # uint8 HWC, shorter side == resolution
    original_size: tuple[int, int]  # (height, width) before resizing


def load_records(
    paths: list[Path], captions: list[str], resolution: int | None, strict: bool = True
) -> list[ImageRecord]:
    """Decode and resize every image once (DreamBooth sets are small).

    ``resolution=None`` keeps every image at its own size (aspect-ratio buckets resize later, per bucket). An
    unreadable file raises naming it with ``strict``; otherwise it is skipped and the skips are reported in one
    warning with their count (an error only when nothing readable is left).
    """
    from PIL import Image

    from ...data import ImageLoadError, load_image

    records, skipped = [], []
    for path, caption in zip(paths, captions):
        try:
            image = load_image(path)
        except ImageLoadError as err:
            if strict:
                raise
            skipped.append(err)
            continue
        width, height = image.size
        scale = 1 if resolution is None else resolution / min(width, height)
        if scale != 1:
            size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        records.append(ImageRecord(path, caption, np.asarray(image, dtype=np.uint8).copy(), (height, width)))
    if skipped:
        if not records:
            raise ValueError(f"none of the {len(skipped)} images could be read; the first: {skipped[0]}")
        logger.warning(
            "skipped %d unreadable image(s) of %d (--strict, bad_images='error', stops instead); the first: %s",
            len(skipped),
            len(paths),
            skipped[0],
        )
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
        caption_dropout (`float`, defaults to 0): probability of training an instance image with the empty caption
            (drawn from the item's seeded generator after its crop and flip, so resume stays exact).
    """

    def __init__(
        self,
        instance: list[ImageRecord],
        class_records: list[ImageRecord],
        resolution: int,
        center_crop: bool = False,
        random_flip: bool = False,
        caption_dropout: float = 0.0,
    ):
        if not instance:
            raise ValueError("no instance images")
        self.instance, self.class_records = instance, class_records
        self.resolution, self.center_crop, self.random_flip = resolution, center_crop, random_flip
        self.caption_dropout = caption_dropout
        self.class_pairs: list[list[int]] | None = None  # several subjects: each instance image's own class images
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

    def drop(self, caption: str, rng: np.random.Generator | None) -> str:
        """``caption``, or ``""`` with probability ``caption_dropout`` (no draw when it is 0: old runs unchanged)."""
        from .concepts import drop_caption

        if rng is None or not self.caption_dropout:
            return caption
        return drop_caption(caption, self.caption_dropout, rng)

    def example(self, image_id: int, rng: np.random.Generator | None, dropout: bool = False) -> dict:
        """One image as a training example; ``rng=None`` gives the deterministic (centre, unflipped) view."""
        record = self.records[image_id]
        top, left = self.crop_box(record, rng)
        size = (self.resolution, self.resolution)
        return self.cropped_example(image_id, record.pixels, (top, left), size, rng, dropout, latent_key=image_id)

    def cropped_example(
        self,
        image_id: int,
        pixels: np.ndarray,
        top_left: tuple[int, int],
        size: tuple[int, int],
        rng: np.random.Generator | None,
        dropout: bool,
        latent_key,
    ) -> dict:
        """The example for ``pixels`` cropped to ``size`` at ``top_left`` (flipped at random, caption dropped at
        random when ``dropout``); with cached latents, ``latent_params[latent_key]`` stands in for the pixels."""
        record = self.records[image_id]
        flip = bool(rng is not None and self.random_flip and rng.random() < 0.5)
        caption = self.drop(record.caption, rng) if dropout else record.caption
        top, left = top_left
        example = {
            "image_id": image_id,
            "caption": caption,
            "original_size": record.original_size,
            "crop_top_left": (top, left),
            "target_size": size,
        }
        if self.latent_params is not None:
            example["latent_params"] = self.latent_params[latent_key]
            return example
        pixels = pixels[top : top + size[0], left : left + size[1]]
        if flip:
            pixels = pixels[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()
        example["pixel_values"] = tensor / 127.5 - 1.0
        return example

    def __getitem__(self, key) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(sample_seed) if sample_seed is not None else None
        item = {"instance": self.example(index % len(self.instance), rng, dropout=True)}
        if self.class_records:
            pool = self.class_pairs[index % len(self.instance)] if self.class_pairs else None
            local = pool[(index // len(self.instance)) % len(pool)] if pool else index % len(self.class_records)
            class_id = len(self.instance) + local
            item["class"] = self.example(class_id, rng)
        return item


def repeat_records(records: list[ImageRecord], repeats: int) -> list[ImageRecord]:
    """Each record ``repeats`` times in a row (``--repeats``; decoded once, shared)."""
    from .concepts import expand_repeats

    return expand_repeats(records, repeats)


def concept_records(
    concepts,
    caption_from_filename: bool,
    expand,
    resolution: int | None,
    repeats: int = 1,
    strict: bool = False,
):
    """Instance records of a multi-subject run and each record's subject index: ``(records, groups)``.

    Each photo is decoded once and repeated ``concept.repeats * repeats`` times. Unreadable photos follow the
    single-subject policy of [`load_records`]: skipped with one warning and their count (``strict=False``, i.e.
    ``bad_images='skip'``) or an error naming the first (``strict=True``); a subject left without a readable photo
    is an error naming its folder.
    """
    from .concepts import concept_items

    items = concept_items(concepts, caption_from_filename)
    unique = list(dict.fromkeys((it.path, it.caption) for it in items))
    loaded = load_records([path for path, _ in unique], [expand(c) for _, c in unique], resolution, strict)
    by_key = {key: record for key, record in zip(_loaded_keys(unique, loaded), loaded)}
    for index, concept in enumerate(concepts):
        if not any(by_key.get((it.path, it.caption)) for it in items if it.concept == index):
            raise ValueError(
                f"concept {index}: none of the images in instance_data_dir {concept.instance_data_dir} could be read"
            )
    kept = [it for it in items if (it.path, it.caption) in by_key]
    records = [by_key[(it.path, it.caption)] for it in kept for _ in range(repeats)]
    groups = [it.concept for it in kept for _ in range(repeats)]
    return records, groups


def _loaded_keys(keys: list[tuple[Path, str]], loaded: list[ImageRecord]) -> list[tuple[Path, str]]:
    """The ``(path, caption)`` key of each loaded record (``load_records`` keeps the order and drops failures)."""
    out, position = [], 0
    for record in loaded:
        while keys[position][0] != record.path:
            position += 1
        out.append(keys[position])
        position += 1
    return out


def class_image_specs(config, concepts, fallback_dir) -> list[tuple[Path, str, int]]:
    """``(class_dir, class_prompt, num_class_images)`` per subject (one for a single-subject run)."""
    if concepts is None:
        return [
            (Path(config.class_data_dir or fallback_dir), config.expand(config.class_prompt), config.num_class_images)
        ]
    return [(Path(c.class_data_dir), c.class_prompt, c.num_class_images) for c in concepts if c.class_prompt]


def pair_by_group(instance_groups: list[int], class_groups: list[int]) -> list[list[int]]:
    """For each instance image, the class images of its own subject; a subject without class images is an error
    (another subject's class images would teach the wrong prior)."""
    pools: dict[int, list[int]] = {}
    for index, group in enumerate(class_groups):
        pools.setdefault(group, []).append(index)
    _check_every_subject_has_class_images(instance_groups, pools)
    return [pools[group] for group in instance_groups]


def _check_every_subject_has_class_images(instance_groups, class_pools) -> None:
    lacking = sorted(set(instance_groups) - set(class_pools))
    if lacking:
        raise ValueError(
            f"concept {lacking[0]} has no readable class images to pair with its photos; check its class_data_dir "
            "(or delete its unreadable files so they are generated again)"
        )


def concept_summary(concepts, expand=lambda p: p) -> list[dict]:
    """``[{token, class_noun, prompt}]`` per subject, for the saved pipeline's config."""
    out = []
    for concept in concepts:
        prompt = expand(concept.instance_prompt)
        words = prompt.replace(",", " ").split()
        token = concept.instance_token
        noun = words[words.index(token) + 1] if token in words and words.index(token) + 1 < len(words) else None
        out.append({"token": token, "class_noun": noun, "prompt": prompt})
    return out


def build_bucketed_data(
    config,
    instance: list[ImageRecord],
    class_records: list[ImageRecord],
    instance_groups: list[int] | None = None,
    class_groups: list[int] | None = None,
):
    """The bucketed dataset and its [`BucketBatchSampler`] for ``config``'s bucket options: ``(dataset, sampler)``.

    Instance images go to their nearest bucket (or their own rounded-down size with ``bucket_no_upscale``); class
    images to the nearest of the buckets their subject's photos use. With several subjects (``instance_groups`` /
    ``class_groups``: each record's subject), batches hold one subject and one bucket, and every instance image is
    paired with a class image of its own subject: of its shape when there is one, else another of the subject's
    class images cropped to the bucket. A subject without class images is an error.
    """
    from .buckets import BucketBatchSampler, assign_buckets, class_buckets, resolve_buckets

    low, high, steps = config.bucket_settings() if not config.aspect_ratio_buckets else (None, None, 64)
    candidates = None
    if not config.bucket_no_upscale:
        candidates = resolve_buckets(True, config.aspect_ratio_buckets, config.resolution, low, high, steps)
    sizes = [r.original_size for r in instance]
    used, instance_bucket = assign_buckets(
        sizes,
        candidates,
        bucket_no_upscale=config.bucket_no_upscale,
        resolution=config.resolution,
        bucket_reso_steps=steps,
    )
    instance_groups = instance_groups or [0] * len(instance)
    class_groups = class_groups or [0] * len(class_records)
    if class_records:
        _check_every_subject_has_class_images(instance_groups, {g: True for g in class_groups})
    # each subject's class images go to the nearest of the buckets its own photos use
    subject_buckets = {
        g: sorted({b for b, h in zip(instance_bucket, instance_groups) if h == g}) for g in class_groups
    }
    class_bucket = [
        subject_buckets[g][class_buckets([r.original_size], [used[b] for b in subject_buckets[g]])[0]]
        for r, g in zip(class_records, class_groups)
    ]
    counts = {used[b]: instance_bucket.count(b) for b in sorted(set(instance_bucket))}
    logger.info(
        "aspect-ratio buckets (height x width: images): %s", ", ".join(f"{h}x{w}: {n}" for (h, w), n in counts.items())
    )
    dataset = BucketedDreamBoothDataset(
        instance,
        class_records,
        used,
        instance_bucket,
        class_bucket,
        config.center_crop,
        config.random_flip,
        config.caption_dropout,
    )
    # the sampler groups by (bucket, subject): one shape and one subject per batch, and a batch whose bucket holds
    # none of its subject's class images borrows them from the same subject's other buckets only
    instance_key = list(zip(instance_bucket, instance_groups))
    class_key = list(zip(class_bucket, class_groups))
    keys = sorted(set(instance_key) | set(class_key))
    ids = {key: i for i, key in enumerate(keys)}
    sampler = BucketBatchSampler(
        [ids[k] for k in instance_key],
        config.train_batch_size,
        config.seed,
        [ids[k] for k in class_key],
        group_of=[subject for _, subject in keys],
    )
    return dataset, sampler


class BucketedDreamBoothDataset(DreamBoothDataset):
    """Instance (and class) images cropped to aspect-ratio buckets instead of one square.

    Keys are ``(instance_index, class_index, sample_seed)`` items of a [`BucketBatchSampler`] batch: the class image
    is cropped to the instance image's bucket, so a batch (instance and class halves) has one shape. Each image is
    resized once, at load, to cover its own bucket; a class image lent to another bucket is resized again from that
    copy. Examples record SDXL's ``original_size`` (before any resize), ``crops_coords_top_left`` (in the resized
    image) and ``target_size`` (the bucket).

    Args:
        instance, class_records (`list[ImageRecord]`): images at their own size (``load_records(..., None)``).
        buckets (`list[tuple[int, int]]`): the (height, width) buckets in use.
        instance_bucket, class_bucket (`list[int]`): each record's bucket index.
        center_crop, random_flip (`bool`): as in [`DreamBoothDataset`].
        caption_dropout (`float`): probability of training an instance image with the empty caption.
    """

    def __init__(
        self,
        instance: list[ImageRecord],
        class_records: list[ImageRecord],
        buckets: list[tuple[int, int]],
        instance_bucket: list[int],
        class_bucket: list[int],
        center_crop: bool = False,
        random_flip: bool = False,
        caption_dropout: float = 0.0,
    ):
        super().__init__(instance, class_records, 0, center_crop, random_flip, caption_dropout)
        from .buckets import cover_size

        self.buckets = [tuple(b) for b in buckets]
        self.bucket_of = list(instance_bucket) + list(class_bucket)
        for record, bucket in zip(self.records, self.bucket_of):
            record.pixels = _resize(record.pixels, cover_size(record.pixels.shape[:2], self.buckets[bucket]))

    def __len__(self) -> int:
        return len(self.instance)

    def has_random_crops(self) -> bool:
        if self.center_crop:
            return False
        return any(r.pixels.shape[:2] != self.buckets[b] for r, b in zip(self.records, self.bucket_of))

    def bucket_example(self, image_id: int, bucket: int, rng: np.random.Generator | None, dropout: bool) -> dict:
        """One image cropped to ``buckets[bucket]``; ``rng=None`` gives the centre, unflipped view."""
        from .buckets import cover_size, crop_box

        record, target = self.records[image_id], self.buckets[bucket]
        pixels = record.pixels
        if bucket != self.bucket_of[image_id]:  # a class image lent to another bucket
            pixels = _resize(pixels, cover_size(pixels.shape[:2], target))
        top_left = crop_box(pixels.shape[:2], target, None if self.center_crop else rng)
        return self.cropped_example(image_id, pixels, top_left, target, rng, dropout, latent_key=(image_id, bucket))

    def cache_keys(self) -> list[tuple[int, int]]:
        """``(image_id, bucket)`` pairs a run can draw (class images may serve every instance bucket)."""
        keys = [(i, b) for i, b in enumerate(self.bucket_of[: len(self.instance)])]
        used = sorted(set(self.bucket_of[: len(self.instance)]))
        return keys + [(len(self.instance) + i, b) for i in range(len(self.class_records)) for b in used]

    def __getitem__(self, key) -> dict:
        index, class_index, sample_seed = key
        rng = np.random.default_rng(sample_seed)
        bucket = self.bucket_of[index]
        item = {"instance": self.bucket_example(index, bucket, rng, dropout=True)}
        if class_index is not None:
            item["class"] = self.bucket_example(len(self.instance) + class_index, bucket, rng, dropout=False)
        return item


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (uint8 HWC) at ``size`` (height, width), LANCZOS; unchanged when already that size."""
    from PIL import Image

    if tuple(pixels.shape[:2]) == tuple(size):
        return pixels
    image = Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def collate(items: list[dict]) -> dict:
    """Instance examples first, then class examples, in one batch (``num_instance`` tells them apart)."""
    examples = [it["instance"] for it in items] + [it["class"] for it in items if "class" in it]
    key = "latent_params" if "latent_params" in examples[0] else "pixel_values"
    batch = {
        "captions": [e["caption"] for e in examples],
        "image_ids": torch.tensor([e["image_id"] for e in examples]),
        "original_sizes": torch.tensor([e["original_size"] for e in examples]),
        "crop_top_left": torch.tensor([e["crop_top_left"] for e in examples]),
        "target_sizes": torch.tensor([e.get("target_size", e[key].shape[-2:]) for e in examples]),
        "num_instance": torch.tensor(len(items)),
    }
    batch[key] = torch.stack([e[key] for e in examples])
    return batch
