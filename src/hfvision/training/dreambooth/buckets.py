"""Aspect-ratio buckets: train on photos of every shape without cropping them square.

Pure functions and one sampler, no torch:

* [`parse_buckets`] / [`resolve_buckets`]: an explicit list ``"h,w;h,w;..."`` (diffusers' ``--aspect_ratio_buckets``,
  only with ``--use_aspect_ratio_buckets``) or buckets computed from kohya's parameters ([`make_buckets`]).
* [`assign_buckets`]: each image goes to the bucket with the nearest aspect ratio (or, with ``bucket_no_upscale``,
  to a bucket of its own size rounded down, so small photos are never enlarged).
* [`resize_and_crop`]: scale to cover the bucket, crop, and record SDXL's ``original_size``,
  ``crops_coords_top_left`` and ``target_size``.
* [`BucketBatchSampler`]: seeded batches of one shape; its state is ``(epoch, position)``, so a resumed run sees
  exactly the batches an uninterrupted one would. Class images are paired from the instance batch's bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

Bucket = tuple[int, int]  # (height, width) in pixels
VAE_FACTOR = 8


# --- which buckets --------------------------------------------------------------------------------------------


def parse_buckets(text: str, multiple_of: int = VAE_FACTOR, label: str | None = None) -> list[Bucket]:
    """``"1024,1024;768,1360"`` -> ``[(1024, 1024), (768, 1360)]`` (height, width), validated.

    Sides must be multiples of ``multiple_of``: 8 (the VAE's factor) for SD/SDXL, 16 for the flow-matching
    families (VAE 8 x the transformer's 2x2 patches: Flux packs 2x2 latents, SD3 patchifies by 2). ``label`` names
    the base model in the error.

    >>> parse_buckets("512,512; 384,640")
    [(512, 512), (384, 640)]
    """
    buckets: list[Bucket] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        fields = [f.strip() for f in part.split(",")]
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise ValueError(f"--aspect_ratio_buckets entry {part!r} is not 'height,width' (e.g. '512,768')")
        height, width = int(fields[0]), int(fields[1])
        if height <= 0 or width <= 0 or height % multiple_of or width % multiple_of:
            who = f" for {label}{_why(multiple_of)}" if label else ""
            raise ValueError(
                f"--aspect_ratio_buckets entry {part!r}: both sides must be positive multiples of {multiple_of}{who}; "
                f"try '{_round(height, multiple_of)},{_round(width, multiple_of)}'"
            )
        if (height, width) in buckets:
            raise ValueError(f"--aspect_ratio_buckets lists {part!r} twice")
        buckets.append((height, width))
    if not buckets:
        raise ValueError(f"--aspect_ratio_buckets {text!r} holds no 'height,width' entries")
    return buckets


def _round(value: int, step: int) -> int:
    return max(step, round(value / step) * step)


def _why(multiple_of: int) -> str:
    return " (VAE 8 x patch 2)" if multiple_of == 2 * VAE_FACTOR else ""


def bucket_options(config) -> dict:
    """The bucket options of a ``DreamBoothConfig`` that [`check_bucket_factor`] checks (empty when buckets are off)."""
    if not config.use_aspect_ratio_buckets:
        return {}
    if config.aspect_ratio_buckets:
        return {"aspect_ratio_buckets": config.aspect_ratio_buckets}
    return {"bucket_reso_steps": config.bucket_reso_steps}


def check_bucket_factor(
    multiple_of: int,
    label: str,
    aspect_ratio_buckets: str | None = None,
    bucket_reso_steps: int | None = None,
) -> None:
    """Refuse bucket options whose sides would not be multiples of the base model's factor, before anything loads.

    An explicit ``--aspect_ratio_buckets`` list is checked entry by entry; computed buckets (and
    ``--bucket_no_upscale``'s) have sides on the ``--bucket_reso_steps`` grid, so the step must be a multiple.

    Args:
        multiple_of (`int`): the family's factor (``RESOLUTION_FACTORS``: 8 for SD/SDXL, 16 for Flux and SD3).
        label (`str`): the base model, for the message.
        aspect_ratio_buckets (`str`, *optional*): the explicit list, if any.
        bucket_reso_steps (`int`, *optional*): the grid of computed buckets.

    >>> check_bucket_factor(16, "flux-dev", bucket_reso_steps=8)
    Traceback (most recent call last):
    ...
    ValueError: --bucket_reso_steps=8: flux-dev needs bucket sides that are multiples of 16 (VAE 8 x patch 2); try 16 or 64
    """
    if aspect_ratio_buckets:
        parse_buckets(aspect_ratio_buckets, multiple_of, label)
    elif bucket_reso_steps is not None and bucket_reso_steps % multiple_of:
        low = max(multiple_of, bucket_reso_steps // multiple_of * multiple_of)
        high = 64 if low < 64 and 64 % multiple_of == 0 else low + multiple_of
        raise ValueError(
            f"--bucket_reso_steps={bucket_reso_steps}: {label} needs bucket sides that are multiples of "
            f"{multiple_of}{_why(multiple_of)}; try {low} or {high}"
        )


def make_buckets(
    resolution: int, min_bucket_reso: int = 256, max_bucket_reso: int = 1024, bucket_reso_steps: int = 64
) -> list[Bucket]:
    """Buckets of about ``resolution**2`` pixels with sides in ``[min_bucket_reso, max_bucket_reso]`` (kohya's rule).

    For each width ``w`` on the ``bucket_reso_steps`` grid, the height is the largest grid value with
    ``h * w <= resolution**2`` (capped at ``max_bucket_reso``); both orientations and the square are included.
    Sorted by aspect ratio (height / width), ascending.

    >>> make_buckets(512, 256, 1024, 64)[:3]
    [(256, 1024), (256, 960), (256, 896)]
    """
    if bucket_reso_steps <= 0 or bucket_reso_steps % VAE_FACTOR:
        raise ValueError(f"--bucket_reso_steps={bucket_reso_steps} must be a positive multiple of {VAE_FACTOR}")
    if not 0 < min_bucket_reso <= resolution <= max_bucket_reso:
        raise ValueError(
            f"need --min_bucket_reso ({min_bucket_reso}) <= resolution ({resolution}) <= "
            f"--max_bucket_reso ({max_bucket_reso})"
        )
    if min_bucket_reso % bucket_reso_steps or max_bucket_reso % bucket_reso_steps:
        raise ValueError(
            f"--min_bucket_reso ({min_bucket_reso}) and --max_bucket_reso ({max_bucket_reso}) must be "
            f"multiples of --bucket_reso_steps ({bucket_reso_steps})"
        )
    area = resolution * resolution
    side = resolution // bucket_reso_steps * bucket_reso_steps
    found = {(side, side)}
    for width in range(min_bucket_reso, max_bucket_reso + 1, bucket_reso_steps):
        height = min(max_bucket_reso, area // width // bucket_reso_steps * bucket_reso_steps)
        if height >= min_bucket_reso:
            found.update({(height, width), (width, height)})
    return sorted(found, key=lambda b: (b[0] / b[1], b[0]))


def resolve_buckets(
    use_aspect_ratio_buckets: bool,
    aspect_ratio_buckets: str | None,
    resolution: int,
    min_bucket_reso: int = 256,
    max_bucket_reso: int = 1024,
    bucket_reso_steps: int = 64,
) -> list[Bucket] | None:
    """The bucket list a run trains with, or ``None`` without bucketing (square crops at ``resolution``).

    An explicit list needs the switch (as in diffusers' scripts): listing buckets without turning them on is an
    error rather than a silently ignored flag.
    """
    if aspect_ratio_buckets and not use_aspect_ratio_buckets:
        raise ValueError("--aspect_ratio_buckets needs --use_aspect_ratio_buckets (add it, or drop the list)")
    if not use_aspect_ratio_buckets:
        return None
    if aspect_ratio_buckets:
        return parse_buckets(aspect_ratio_buckets)
    return make_buckets(resolution, min_bucket_reso, max_bucket_reso, bucket_reso_steps)


# --- which bucket for each image ------------------------------------------------------------------------------


def nearest_bucket(size: Bucket, buckets: Sequence[Bucket]) -> int:
    """Index of the bucket whose aspect ratio is nearest ``size``'s (height, width), on a log scale so 1:2 and 2:1
    are equally far from 1:1. Ties go to the earlier bucket."""
    target = math.log(size[0] / size[1])
    errors = [abs(math.log(h / w) - target) for h, w in buckets]
    return int(np.argmin(errors))


def no_upscale_bucket(size: Bucket, resolution: int, bucket_reso_steps: int = 64) -> Bucket:
    """kohya's ``bucket_no_upscale``: the image's own shape, shrunk to ``resolution**2`` pixels if larger, sides
    rounded down to ``bucket_reso_steps`` (so the image is only ever scaled down)."""
    height, width = size
    scale = min(1.0, math.sqrt(resolution * resolution / (height * width)))
    h = int(height * scale) // bucket_reso_steps * bucket_reso_steps
    w = int(width * scale) // bucket_reso_steps * bucket_reso_steps
    if h == 0 or w == 0:
        raise ValueError(
            f"an image of {height}x{width} is smaller than one bucket step ({bucket_reso_steps} px); "
            "remove it or lower --bucket_reso_steps"
        )
    return h, w


def assign_buckets(
    sizes: Sequence[Bucket],
    buckets: Sequence[Bucket] | None = None,
    *,
    bucket_no_upscale: bool = False,
    resolution: int | None = None,
    bucket_reso_steps: int = 64,
) -> tuple[list[Bucket], list[int]]:
    """Bucket every image: returns ``(used_buckets, bucket_index_per_image)``; unused buckets are dropped.

    Args:
        sizes (`list[tuple[int, int]]`): each image's (height, width).
        buckets (`list[tuple[int, int]]`, *optional*): candidates; required unless ``bucket_no_upscale``.
        bucket_no_upscale (`bool`): buckets from the images' own sizes ([`no_upscale_bucket`]) instead.
        resolution (`int`), bucket_reso_steps (`int`): for ``bucket_no_upscale``.
    """
    if bucket_no_upscale:
        if resolution is None:
            raise ValueError("bucket_no_upscale needs resolution")
        chosen = [no_upscale_bucket(s, resolution, bucket_reso_steps) for s in sizes]
    else:
        if not buckets:
            raise ValueError("assign_buckets needs a bucket list (or bucket_no_upscale=True)")
        chosen = [tuple(buckets[nearest_bucket(s, buckets)]) for s in sizes]
    used = sorted(set(chosen), key=lambda b: (b[0] / b[1], b[0]))
    index = {b: i for i, b in enumerate(used)}
    return used, [index[b] for b in chosen]


def class_buckets(sizes: Sequence[Bucket], used: Sequence[Bucket]) -> list[int]:
    """Bucket class images among the instance images' ``used`` buckets (nearest aspect ratio), so every class
    image can join an instance batch of its shape."""
    return [nearest_bucket(s, used) for s in sizes]


# --- resize and crop ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropInfo:
    """SDXL's micro-conditioning for one image, in pixels, (height, width) / (top, left) order.

    ``crops_coords_top_left`` is in the resized image's coordinates (the image is first scaled to cover the bucket).
    """

    original_size: Bucket
    crops_coords_top_left: tuple[int, int]
    target_size: Bucket
    resized_size: Bucket

    @property
    def add_time_ids(self) -> tuple[int, int, int, int, int, int]:
        """SDXL's six size/crop ids, in the UNet's order: original (h, w), crop (top, left), target (h, w)."""
        return (*self.original_size, *self.crops_coords_top_left, *self.target_size)


def cover_size(size: Bucket, bucket: Bucket) -> Bucket:
    """The smallest scaled size of ``size`` that covers ``bucket`` (aspect ratio kept, never below the bucket)."""
    height, width = size
    scale = max(bucket[0] / height, bucket[1] / width)
    return max(bucket[0], round(height * scale)), max(bucket[1], round(width * scale))


def crop_box(resized: Bucket, bucket: Bucket, rng: np.random.Generator | None = None) -> tuple[int, int]:
    """Top-left of the crop: centred with ``rng=None``, else uniform over every valid offset."""
    spare_h, spare_w = resized[0] - bucket[0], resized[1] - bucket[1]
    if rng is None:
        return spare_h // 2, spare_w // 2
    return int(rng.integers(0, spare_h + 1)), int(rng.integers(0, spare_w + 1))


def resize_and_crop(image, bucket: Bucket, rng: np.random.Generator | None = None):
    """Scale a PIL image to cover ``bucket``, crop it (centre, or random with ``rng``): ``(image, CropInfo)``."""
    from PIL import Image

    original = (image.height, image.width)
    resized = cover_size(original, bucket)
    if resized != original:
        image = image.resize((resized[1], resized[0]), Image.Resampling.LANCZOS)
    top, left = crop_box(resized, bucket, rng)
    image = image.crop((left, top, left + bucket[1], top + bucket[0]))
    return image, CropInfo(original, (top, left), tuple(bucket), resized)


# --- batches of one shape -------------------------------------------------------------------------------------


class BucketBatchSampler:
    """Seeded batches whose items all share one bucket, resumable from ``(epoch, position)``.

    Each epoch, every bucket's images are shuffled and cut into batches of ``batch_size`` (a bucket's last batch
    may be smaller unless ``drop_last``), and the batches of all buckets are shuffled together; everything is drawn
    from ``numpy.random.default_rng([seed, epoch])``, so the order is a pure function of (seed, epoch).

    Items are ``(instance_index, class_index, sample_seed)``: ``class_index`` is a class image from the same bucket
    (cycled through that bucket's shuffled class images; when the bucket has none, from the class images of every
    bucket of the same group, to be cropped to the bucket like any other), or ``None`` without class images.
    ``sample_seed`` seeds that item's random crop / flip.

    Groups are the subjects of a multi-subject run: with ``group_of`` (the group of each bucket id), a bucket
    never borrows another subject's class images. Without it every bucket is in one group.

    ``position`` counts the batches of the current epoch already consumed. With a ``DataLoader`` that prefetches,
    record the trainer's own count and restore it with [`load_state_dict`], not the sampler's live attribute.
    Under several processes accelerate's ``BatchSamplerShard`` iterates this whole sampler in every process and
    keeps every ``num_processes``-th batch, so ``position`` counts *global* batches: a process that consumed ``n``
    batches of the epoch restores ``position = n * num_processes``.

    Resuming through accelerate: ``accelerator.prepare(DataLoader(dataset, batch_sampler=sampler))`` calls
    ``set_epoch(loader.iteration)`` at every ``__iter__``, and its ``iteration`` starts at 0 in a fresh process. So
    restore with ``sampler.load_state_dict(state)`` and then ``prepared_loader.set_epoch(state["epoch"])``; the
    loader's call then names the epoch the sampler is already in, and [`set_epoch`] keeps the position.

    >>> sampler = BucketBatchSampler([0, 1, 0, 1, 0], batch_size=2, seed=0)
    >>> sorted(len(b) for b in sampler)
    [1, 2, 2]
    """

    def __init__(
        self,
        bucket_of: Sequence[int],
        batch_size: int,
        seed: int,
        class_bucket_of: Sequence[int] = (),
        drop_last: bool = False,
        group_of: Sequence[int] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if not bucket_of:
            raise ValueError("BucketBatchSampler needs at least one image")
        self.bucket_of, self.class_bucket_of = list(bucket_of), list(class_bucket_of)
        self.group_of = list(group_of) if group_of is not None else None
        if self.class_bucket_of:
            lacking = sorted(set(map(self._group, self.bucket_of)) - set(map(self._group, self.class_bucket_of)))
            if lacking:
                raise ValueError(f"group(s) {lacking} have instance images but no class images to pair them with")
        self.max_batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.epoch, self.position = 0, 0

    @property
    def batch_size(self) -> int | None:
        """``None`` when batches may be short (``drop_last=False``): accelerate's ``BatchSamplerShard`` then shards
        whole batches of any length instead of assuming fixed-size ones (which would mix buckets)."""
        return self.max_batch_size if self.drop_last else None

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``, starting from its first batch; naming the current epoch keeps ``position``.

        accelerate's prepared loaders call this at the start of every pass with their own epoch count; resetting
        the position on such a call would restart a resumed epoch from batch 0.
        """
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state was saved with seed {state['seed']}, this run uses {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int | None, int]]]:
        """Every batch of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        by_bucket = _group(self.bucket_of)
        for bucket in sorted(by_bucket):
            members = rng.permutation(by_bucket[bucket]).tolist()
            for start in range(0, len(members), self.max_batch_size):
                chunk = members[start : start + self.max_batch_size]
                if len(chunk) == self.max_batch_size or not self.drop_last:
                    batches.append(chunk)
        order = rng.permutation(len(batches)).tolist()
        batches = [batches[i] for i in order]
        class_pool = self._class_pools(rng, set(by_bucket))
        cursor = dict.fromkeys(class_pool, 0)
        bucket_of = self.bucket_of
        out = []
        for batch in batches:
            seeds = rng.integers(0, 2**62, size=len(batch)).tolist()
            items = []
            for index, sample_seed in zip(batch, seeds):
                bucket, class_index = bucket_of[index], None
                if class_pool:
                    pool = class_pool[bucket]
                    class_index = pool[cursor[bucket] % len(pool)]
                    cursor[bucket] += 1
                items.append((index, class_index, sample_seed))
            out.append(items)
        return out

    def _group(self, bucket: int) -> int:
        return 0 if self.group_of is None else self.group_of[bucket]

    def _class_pools(self, rng: np.random.Generator, buckets: set[int]) -> dict[int, list[int]]:
        if not self.class_bucket_of:
            return {}
        by_bucket = _group(self.class_bucket_of)
        by_group = _group([self._group(b) for b in self.class_bucket_of])  # class images per subject
        fallback = {group: rng.permutation(members).tolist() for group, members in sorted(by_group.items())}
        pools = {}
        for bucket in sorted(buckets):
            own = by_bucket.get(bucket)
            pools[bucket] = rng.permutation(own).tolist() if own else fallback[self._group(bucket)]
        return pools

    def __len__(self) -> int:
        counts = _group(self.bucket_of)
        if self.drop_last:
            return sum(len(m) // self.max_batch_size for m in counts.values())
        return sum(math.ceil(len(m) / self.max_batch_size) for m in counts.values())

    def __iter__(self) -> Iterator[list[tuple[int, int | None, int]]]:
        batches = self.epoch_batches(self.epoch)
        for i in range(self.position, len(batches)):
            self.position = i + 1
            yield batches[i]
        self.epoch, self.position = self.epoch + 1, 0


def _group(bucket_of: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for index, bucket in enumerate(bucket_of):
        groups.setdefault(bucket, []).append(index)
    return groups
