"""Aspect-ratio buckets: parsing and kohya-style generation, nearest-ratio assignment, crops recorded for SDXL
(checked by brute force), one shape per batch, class images from the same bucket, and exact mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hfvision.training.dreambooth.buckets import (
    BucketBatchSampler,
    assign_buckets,
    class_buckets,
    make_buckets,
    nearest_bucket,
    no_upscale_bucket,
    parse_buckets,
    resize_and_crop,
    resolve_buckets,
)


def test_parse_and_resolve_explicit_buckets():
    assert parse_buckets("512,512; 384,640;640,384;") == [(512, 512), (384, 640), (640, 384)]
    with pytest.raises(ValueError, match=r"entry '512x512' is not 'height,width'"):
        parse_buckets("512x512")
    with pytest.raises(ValueError, match=r"entry '500,512': .* multiples of 8; try '496,512'|try '504,512'"):
        parse_buckets("500,512")
    with pytest.raises(ValueError, match="entry '1016,512': both sides must be positive multiples of 16"):
        parse_buckets("1016,512", multiple_of=16)
    with pytest.raises(ValueError, match="lists '512,512' twice"):
        parse_buckets("512,512;512,512")
    with pytest.raises(ValueError, match="needs --use_aspect_ratio_buckets"):
        resolve_buckets(False, "512,512", 512)
    assert resolve_buckets(False, None, 512) is None
    assert resolve_buckets(True, "256,512", 512) == [(256, 512)]
    assert resolve_buckets(True, None, 512, 256, 1024, 64) == make_buckets(512, 256, 1024, 64)


def test_computed_buckets_follow_the_area_rule():
    buckets = make_buckets(512, 256, 1024, 64)
    assert (512, 512) in buckets and (256, 1024) in buckets and (1024, 256) in buckets
    for h, w in buckets:
        assert h % 64 == 0 and w % 64 == 0 and 256 <= min(h, w) and max(h, w) <= 1024
        assert h * w <= 512 * 512
        # the largest height on the grid for this width (or capped): one more step would exceed the area
        tallest = lambda a, b: a == 1024 or (a + 64) * b > 512 * 512  # noqa: E731
        assert h == w or tallest(h, w) or tallest(w, h)
    ratios = [h / w for h, w in buckets]
    assert ratios == sorted(ratios) and len(set(buckets)) == len(buckets)
    # both orientations of every bucket
    assert sorted(buckets) == sorted((w, h) for h, w in buckets)
    with pytest.raises(ValueError, match="--bucket_reso_steps=60 must be a positive multiple of 8"):
        make_buckets(512, 256, 1024, 60)
    with pytest.raises(ValueError, match="--min_bucket_reso"):
        make_buckets(512, 640, 1024, 64)


def test_assignment_picks_the_nearest_aspect_ratio():
    buckets = [(512, 512), (384, 640), (640, 384), (256, 1024)]
    assert nearest_bucket((1000, 1000), buckets) == 0
    assert nearest_bucket((600, 1000), buckets) == 1  # 0.6 == 384/640
    assert nearest_bucket((3000, 1700), buckets) == 2
    assert nearest_bucket((100, 1000), buckets) == 3  # extreme -> most extreme bucket
    used, index = assign_buckets([(1000, 1000), (600, 1000), (480, 800), (100, 1000)], buckets)
    assert used == [(256, 1024), (384, 640), (512, 512)]  # unused (640, 384) dropped, sorted by ratio
    assert [used[i] for i in index] == [(512, 512), (384, 640), (384, 640), (256, 1024)]
    # class images go to the nearest *used* bucket
    assert [used[i] for i in class_buckets([(512, 512), (700, 400)], used)] == [(512, 512), (512, 512)]
    # no upscale: own size rounded down; large images shrunk to ~resolution^2 first
    assert no_upscale_bucket((300, 200), 512, 64) == (256, 192)
    h, w = no_upscale_bucket((2000, 1000), 512, 64)
    assert h * w <= 512 * 512 and (h, w) == (704, 320)
    used, index = assign_buckets([(300, 200), (310, 250), (130, 700)], bucket_no_upscale=True, resolution=512)
    assert used == [(128, 640), (256, 192)] and index == [1, 1, 0]


@pytest.mark.parametrize("size, bucket", [((300, 500), (256, 384)), ((517, 211), (448, 192)), ((64, 64), (64, 64))])
@pytest.mark.parametrize("seed", [None, 0, 1])
def test_crop_coordinates_match_a_brute_force_search(size, bucket, seed):
    rng_pixels = np.random.default_rng(7)
    image = Image.fromarray(rng_pixels.integers(0, 256, size=(*size, 3), dtype=np.uint8))
    rng = None if seed is None else np.random.default_rng(seed)
    out, info = resize_and_crop(image, bucket, rng)
    assert (out.height, out.width) == bucket == info.target_size
    assert info.original_size == size
    assert info.add_time_ids == (*size, *info.crops_coords_top_left, *bucket)
    resized = np.asarray(image.resize((info.resized_size[1], info.resized_size[0]), Image.Resampling.LANCZOS))
    assert info.resized_size[0] >= bucket[0] and info.resized_size[1] >= bucket[1]
    assert info.resized_size[0] == bucket[0] or info.resized_size[1] == bucket[1]  # covers, no bigger than needed
    crop = np.asarray(out)
    matches = [
        (t, left)
        for t in range(resized.shape[0] - bucket[0] + 1)
        for left in range(resized.shape[1] - bucket[1] + 1)
        if np.array_equal(resized[t : t + bucket[0], left : left + bucket[1]], crop)
    ]
    assert matches == [info.crops_coords_top_left]
    if seed is None:  # centred
        assert info.crops_coords_top_left == (
            (info.resized_size[0] - bucket[0]) // 2,
            (info.resized_size[1] - bucket[1]) // 2,
        )


def _bucketed_dataset():
    rng = np.random.default_rng(3)
    sizes = [(int(h), int(w)) for h, w in rng.integers(64, 400, size=(23, 2))]
    used, bucket_of = assign_buckets(sizes, make_buckets(128, 64, 256, 32))
    class_sizes = [(128, 128)] * 5 + [(96, 200)] * 4
    return sizes, used, bucket_of, class_buckets(class_sizes, used)


def test_every_batch_is_one_shape_and_class_images_match():
    sizes, used, bucket_of, class_of = _bucketed_dataset()
    sampler = BucketBatchSampler(bucket_of, batch_size=3, seed=11, class_bucket_of=class_of)
    class_sizes = [(128, 128)] * 5 + [(96, 200)] * 4
    seen = []
    for batch in sampler:
        shapes = set()
        for index, class_index, sample_seed in batch:
            image = Image.new("RGB", (sizes[index][1], sizes[index][0]))
            out, _ = resize_and_crop(image, used[bucket_of[index]], np.random.default_rng(sample_seed))
            shapes.add(out.size)
            cls = Image.new("RGB", class_sizes[class_index][::-1])
            shapes.add(resize_and_crop(cls, used[bucket_of[index]])[0].size)
            # a class image from the batch's own bucket whenever that bucket has any
            if any(b == bucket_of[index] for b in class_of):
                assert class_of[class_index] == bucket_of[index]
        assert len(shapes) == 1
        assert len(batch) <= 3
        seen += [item[0] for item in batch]
    assert sorted(seen) == list(range(len(sizes)))  # each image exactly once per epoch
    assert sampler.epoch == 1 and sampler.position == 0
    assert len(sampler) == sum(-(-bucket_of.count(b) // 3) for b in set(bucket_of))


def test_order_is_seeded_and_resume_yields_exactly_the_remaining_batches():
    _, _, bucket_of, class_of = _bucketed_dataset()
    make = lambda: BucketBatchSampler(bucket_of, batch_size=2, seed=5, class_bucket_of=class_of)  # noqa: E731
    full = make()
    epoch0, epoch1 = list(full), list(full)
    assert epoch0 != epoch1  # a new order each epoch
    assert make().epoch_batches(1) == epoch1  # order is a pure function of (seed, epoch)
    assert BucketBatchSampler(bucket_of, batch_size=2, seed=6, class_bucket_of=class_of).epoch_batches(0) != epoch0

    interrupted = make()
    interrupted.set_epoch(1)
    it = iter(interrupted)
    consumed = [next(it) for _ in range(4)]
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "position": 4, "seed": 5}

    resumed = make()  # a fresh process
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert consumed + rest == epoch1
    assert resumed.state_dict() == {"epoch": 2, "position": 0, "seed": 5}
    assert list(resumed) == make().epoch_batches(2)
    with pytest.raises(ValueError, match="saved with seed 5, this run uses 9"):
        BucketBatchSampler(bucket_of, 2, seed=9).load_state_dict(state)


class _Items(torch.utils.data.Dataset):
    """Hands back the sampler's items, so a loader's batches are the sampler's batches."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, item):
        return item


def test_resume_through_an_accelerate_prepared_loader():
    """accelerate's prepared loader calls ``set_epoch(iteration)`` at every pass and its iteration starts at 0 in a
    fresh process; restored as documented (load_state_dict, then the loader's set_epoch), the resumed run sees the
    uninterrupted tail of the epoch and then the next epoch."""
    from accelerate import Accelerator

    _, _, bucket_of, class_of = _bucketed_dataset()
    make = lambda: BucketBatchSampler(bucket_of, batch_size=2, seed=5, class_bucket_of=class_of)  # noqa: E731
    reference = make()
    epoch1, epoch2 = reference.epoch_batches(1), reference.epoch_batches(2)

    sampler = make()
    sampler.load_state_dict({"epoch": 1, "position": 4, "seed": 5})
    loader = torch.utils.data.DataLoader(_Items(len(bucket_of)), batch_sampler=sampler, collate_fn=list)
    prepared = Accelerator(cpu=True).prepare(loader)
    assert prepared.batch_sampler is sampler
    prepared.set_epoch(1)
    assert sampler.state_dict() == {"epoch": 1, "position": 4, "seed": 5}
    assert list(prepared) == epoch1[4:]
    assert list(prepared) == epoch2
    # naming another epoch still starts it from its first batch
    prepared.set_epoch(1)
    assert list(prepared) == epoch1


def test_drop_last_and_no_class_images():
    sampler = BucketBatchSampler([0, 0, 0, 1], batch_size=2, seed=0, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 1 and len(batches[0]) == 2
    assert all(item[1] is None for item in batches[0])


_PIPELINE = """
import hashlib, json, sys
import numpy as np
from PIL import Image
from hfvision.training.dreambooth.buckets import BucketBatchSampler, assign_buckets, make_buckets, resize_and_crop
from hfvision.training.dreambooth.concepts import drop_caption


def run(mode, state_path, count):
    rng = np.random.default_rng(0)
    sizes = [tuple(int(v) for v in rng.integers(48, 160, size=2)) for _ in range(11)]
    images = [Image.fromarray(rng.integers(0, 256, size=(*s, 3), dtype=np.uint8)) for s in sizes]
    used, bucket_of = assign_buckets(sizes, make_buckets(64, 32, 128, 16))
    sampler = BucketBatchSampler(bucket_of, batch_size=2, seed=42)
    if mode == "resume":
        sampler.load_state_dict(json.load(open(state_path)))

    def forever():
        while True:  # each pass is one epoch; the sampler moves to the next epoch by itself
            yield from sampler

    out, it = [], forever()
    for _ in range(count):
        digest = hashlib.sha256()
        for index, _, sample_seed in next(it):
            item_rng = np.random.default_rng(sample_seed)
            caption = drop_caption(f"photo {index}", 0.3, item_rng)
            crop, info = resize_and_crop(images[index], used[bucket_of[index]], item_rng)
            digest.update(np.asarray(crop).tobytes() + caption.encode() + repr(info.add_time_ids).encode())
        out.append(digest.hexdigest())
    if mode == "stop":
        json.dump(sampler.state_dict(), open(state_path, "w"))
    return {"digests": out, "epoch": sampler.epoch, "per_epoch": len(sampler)}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
"""


def test_bucketed_batches_resume_bit_identical_in_a_fresh_process(tmp_path):
    """Pixels, captions (with dropout) and SDXL ids of every batch: an uninterrupted run vs. stop after 5 batches
    (sampler state saved) and resume in a new interpreter, across an epoch boundary."""
    import json
    import os
    import subprocess
    import sys

    state = tmp_path / "state.json"
    namespace = {"__name__": "bucket_pipeline"}
    exec(_PIPELINE, namespace)  # the uninterrupted run and the interrupted one, in this process
    full = namespace["run"]("full", state, 14)
    assert full["epoch"] >= 1 and full["per_epoch"] < 14  # the run crosses epoch boundaries
    first = namespace["run"]("stop", state, 5)
    assert json.loads(state.read_text()) == {"epoch": 0, "position": 5, "seed": 42}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _PIPELINE, "resume", str(state), "9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rest = json.loads(proc.stdout)
    assert first["digests"] + rest["digests"] == full["digests"]
    assert len(set(full["digests"])) == len(full["digests"])


@pytest.mark.parametrize("drop_last", [False, True])
def test_accelerate_sharding_keeps_batches_whole(drop_last):
    """Under several processes accelerate shards the batch sampler: every process's batch is still one bucket, and
    together the processes see every image (drop_last=False) or every full batch (drop_last=True)."""
    from accelerate.data_loader import BatchSamplerShard

    _, _, bucket_of, _ = _bucketed_dataset()
    sampler = BucketBatchSampler(bucket_of, batch_size=3, seed=2, drop_last=drop_last)
    expected = sampler.epoch_batches(0)
    shards = []
    for rank in range(2):
        sampler.set_epoch(0)
        shards.append(list(BatchSamplerShard(sampler, num_processes=2, process_index=rank, even_batches=True)))
    assert len(shards[0]) == len(shards[1])  # processes step together
    for batch in shards[0] + shards[1]:
        assert len({bucket_of[index] for index, _, _ in batch}) == 1
        assert batch in expected  # whole batches, never re-cut
    seen = {index for shard in shards for batch in shard for index, _, _ in batch}
    assert seen == {index for batch in expected for index, _, _ in batch}
    if drop_last:
        assert all(len(batch) == 3 for shard in shards for batch in shard)
