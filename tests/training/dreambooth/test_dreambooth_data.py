"""Data order and augmentation are pure functions of (seed, epoch, position): the basis of exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfvision.training.dreambooth.data import DreamBoothDataset, EpochSampler, collate, list_images, load_records


def _dataset(instance_dir, class_count=2, **kwargs):
    paths = list_images(instance_dir)
    instance = load_records(paths, [f"caption {p.stem}" for p in paths], 64)
    klass = load_records(paths[:class_count], ["a class"] * class_count, 64)
    return DreamBoothDataset(instance, klass, 64, **kwargs)


def test_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    first = list(a)
    assert sorted(i for i, _ in first) == list(range(10))
    assert first == list(b) == list(a)  # repeatable
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochSampler(10, seed=4)) != first


def test_random_crops_come_from_the_sample_seed(instance_dir):
    ds = _dataset(instance_dir)
    rocket = next(i for i, r in enumerate(ds.instance) if r.path.stem == "rocket")  # 80x64: 17 crop offsets
    crops = {ds[(rocket, seed)]["instance"]["crop_top_left"] for seed in range(20)}
    assert len(crops) > 1
    x, y = ds[(rocket, 123)], ds[(rocket, 123)]
    assert torch.equal(x["instance"]["pixel_values"], y["instance"]["pixel_values"])
    assert x["instance"]["pixel_values"].shape == (3, 64, 64)
    assert -1 <= x["instance"]["pixel_values"].min() and x["instance"]["pixel_values"].max() <= 1
    centred = _dataset(instance_dir, center_crop=True)
    assert {centred[(rocket, s)]["instance"]["crop_top_left"] for s in range(5)} == {(0, 8)}


def test_items_pair_instance_and_class_images_and_collate_keeps_instances_first(instance_dir):
    ds = _dataset(instance_dir, class_count=2)
    assert len(ds) == 3  # max(3 instance, 2 class)
    items = [ds[(i, i)] for i in range(3)]
    assert [it["class"]["image_id"] for it in items] == [3, 4, 3]
    batch = collate(items)
    assert batch["pixel_values"].shape == (6, 3, 64, 64) and int(batch["num_instance"]) == 3
    assert batch["captions"][:3] == [r.caption for r in ds.instance] and batch["captions"][3:] == ["a class"] * 3
    assert batch["original_sizes"].tolist()[2] == [64, 80]  # (height, width) of the rocket before resizing


def test_skip_first_batches_replays_the_rest_of_the_epoch(instance_dir):
    """What a resumed run sees after accelerate's skip_first_batches equals the uninterrupted epoch's tail."""
    from accelerate import Accelerator, skip_first_batches

    ds = _dataset(instance_dir, class_count=3)
    sampler = EpochSampler(len(ds), seed=0)
    loader = Accelerator(cpu=True).prepare(
        torch.utils.data.DataLoader(ds, batch_size=1, sampler=sampler, collate_fn=collate)
    )
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        full = [b["pixel_values"] for b in loader]
        loader.set_epoch(epoch)
        tail = [b["pixel_values"] for b in skip_first_batches(loader, 2)]
        assert len(full) == 3 and len(tail) == 1
        assert torch.equal(full[2], tail[0])
        if epoch == 0:
            first_epoch = full
    assert not all(torch.equal(a, b) for a, b in zip(first_epoch, full))


def test_captions_come_from_sidecars(tmp_path):
    from hfvision.testing import sample_image
    from hfvision.training.dreambooth.data import read_caption

    sample_image("coffee").resize((64, 64)).save(tmp_path / "a.png")
    sample_image("coffee").resize((64, 64)).save(tmp_path / "sks dog (3).png")
    (tmp_path / "a.txt").write_text("a photo of sks mug on a table\n")
    assert read_caption(tmp_path / "a.png", "a photo of sks", False) == "a photo of sks mug on a table"
    assert read_caption(tmp_path / "sks dog (3).png", "a photo of sks", True) == "sks dog"
    assert read_caption(tmp_path / "sks dog (3).png", "a photo of sks", False) == "a photo of sks"
    records = load_records(list_images(tmp_path), ["x", "y"], 32)
    assert records[0].pixels.shape == (32, 32, 3) and records[0].pixels.dtype == np.uint8


def test_unreadable_images_are_skipped_with_one_warning_or_stop_with_strict(tmp_path, caplog):
    import logging

    from hfvision.data import ImageLoadError
    from hfvision.testing import sample_image
    from hfvision.training.dreambooth.data import load_records

    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, name in zip(good, ("astronaut", "coffee")):
        sample_image(name).resize((40, 32)).save(path)
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "fake.jpg").write_bytes(b"not an image")
    paths = [good[0], tmp_path / "zero.png", good[1], tmp_path / "fake.jpg"]
    before = {p: p.read_bytes() for p in paths}
    with caplog.at_level(logging.WARNING, logger="hfvision"):
        records = load_records(paths, ["x"] * 4, 32, strict=False)
    assert [r.path for r in records] == good and records[0].pixels.shape == (32, 40, 3)
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 unreadable image(s) of 4" in warnings[0] and "zero.png" in warnings[0]
    with pytest.raises(ImageLoadError, match="zero.png"):
        load_records(paths, ["x"] * 4, 32, strict=True)
    with pytest.raises(ValueError, match="none of the 2 images could be read"):
        load_records(paths[1::2], ["x"] * 2, 32, strict=False)
    assert {p: p.read_bytes() for p in paths} == before  # sources untouched
