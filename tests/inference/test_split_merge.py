"""Data-parallel split/merge logic in one process, input collection, and classify_files records."""

from __future__ import annotations

import json

import pytest


def test_shards_are_contiguous_balanced_and_cover_everything():
    from hfvision.inference.distributed import merge_shards, shard, shard_bounds

    for n in range(10):
        for k in range(1, 5):
            bounds = [shard_bounds(n, i, k) for i in range(k)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, in order
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            items = [f"x{i}" for i in range(n)]
            assert merge_shards([shard(items, i, k) for i in reversed(range(k))], n) == items
    with pytest.raises(RuntimeError, match="duplicated"):
        merge_shards([[(0, "a")], [(0, "a")]], 1)
    with pytest.raises(RuntimeError, match="1 input"):
        merge_shards([[(0, "a")]], 2)
    with pytest.raises(ValueError, match="shard index 2"):
        shard_bounds(3, 2, 2)


def test_collect_inputs(photo_dir):
    from hfvision.inference import collect_inputs

    names = [p.replace(str(photo_dir) + "/", "") for p in collect_inputs(photo_dir)]
    assert names == ["a_astronaut.jpg", "b_chelsea.png", "d_rocket.jpg", "e_camera.bmp", "f_empty.png",
                     "g_notes.jpg", "sub/c_coffee.webp"]  # fmt: skip
    assert collect_inputs(f"{photo_dir}/*.txt") == [str(photo_dir / "readme.txt")]  # globs take what they match
    both = collect_inputs([photo_dir / "b_chelsea.png", f"{photo_dir}/[ab]_*", photo_dir / "b_chelsea.png"])
    assert both == [str(photo_dir / "b_chelsea.png"), str(photo_dir / "a_astronaut.jpg")]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        collect_inputs(photo_dir / "missing")
    with pytest.raises(ValueError, match="no image files found"):
        collect_inputs(f"{photo_dir}/*.gif")


def test_sharded_runs_merge_to_the_single_process_records(vit_pipe, photo_dir, tmp_path, same_predictions):
    from hfvision.data import load_image
    from hfvision.inference import classify_files, collect_inputs, merge_shards, shard
    from hfvision.inference.classify import _classify_shard

    out = tmp_path / "preds.jsonl"
    single = classify_files(photo_dir, pipe=vit_pipe, batch_size=2, output=out, progress=False)
    files = collect_inputs(photo_dir)
    assert [r["file"] for r in single] == files
    assert [json.loads(line) for line in out.read_text().splitlines()] == single
    errors = {r["file"].rsplit("/", 1)[1]: r["error"] for r in single if "error" in r}
    assert errors == {"f_empty.png": "empty: zero bytes", "g_notes.jpg": "not an image: unknown format"}
    for record in single:
        if "predictions" in record:  # same as classifying the loaded image directly (EXIF rotation included)
            assert record["predictions"] == vit_pipe(load_image(record["file"]))
    for count in (2, 3):
        parts = [_classify_shard(vit_pipe, shard(files, i, count), 2, {}, False) for i in range(count)]
        merged = merge_shards(parts, len(files))
        assert [r["file"] for r in merged] == files and [set(r) for r in merged] == [set(r) for r in single]
        same_predictions([r.get("predictions", []) for r in merged], [r.get("predictions", []) for r in single])
