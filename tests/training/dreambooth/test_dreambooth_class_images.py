"""Class images: keyed cache, per-index seeds (batching does not matter), resumable generation."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hfvision.training.dreambooth.class_images import (
    class_image_key,
    generate_class_images,
    generated_name,
    plan_class_images,
)


def _generate(pipe, folder, key, indices, batch_size):
    return generate_class_images(
        lambda: pipe,
        folder,
        key,
        indices,
        "a photo of a dog",
        32,
        seed=0,
        batch_size=batch_size,
        num_inference_steps=2,
        show_progress=False,
    )


def test_generation_is_batched_keyed_and_resumable(tmp_path):
    from hfvision.testing import tiny_sd_pipeline

    pipe = tiny_sd_pipeline("sd1")
    key = class_image_key("base", None, "a photo of a dog", 64, 0)
    assert key != class_image_key("base", None, "a photo of a cat", 64, 0)
    assert key != class_image_key("other-base", None, "a photo of a dog", 64, 0)
    assert key != class_image_key("base", None, "a photo of a dog", 64, 1)

    # an "interrupted" run produced images 0 and 2 in one batch; the user also dropped in one photo
    _generate(pipe, tmp_path, key, [0, 2], batch_size=2)
    Image.new("RGB", (64, 64), "red").save(tmp_path / "my-dog.jpg")
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    paths, missing = plan_class_images(tmp_path, key, needed=4)
    assert paths[0].name == "my-dog.jpg"  # user images count first
    assert [p.name for p in paths[1:]] == [generated_name(key, i) for i in range(3)]
    assert missing == [1]
    _generate(pipe, tmp_path, key, missing, batch_size=1)
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in tmp_path.iterdir() if p.name in stamps)
    assert plan_class_images(tmp_path, key, needed=4)[1] == []
    # generated images of another key are ignored (the user's photo still counts)
    assert plan_class_images(tmp_path, class_image_key("x", None, "y", 64, 0), needed=3)[1] == [0, 1]

    # image 2 depends on its index only: regenerating it alone (batch of one) gives the same picture
    first = np.asarray(Image.open(tmp_path / generated_name(key, 2)), dtype=np.int16)
    (tmp_path / generated_name(key, 2)).unlink()
    _generate(pipe, tmp_path, key, [2], batch_size=1)
    again = np.asarray(Image.open(tmp_path / generated_name(key, 2)), dtype=np.int16)
    assert np.abs(first - again).max() <= 1  # batched vs single UNet calls may round differently
    assert not (tmp_path / generated_name(key, 3)).exists()
    assert not list(tmp_path.glob(".*.tmp"))
