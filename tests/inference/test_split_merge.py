"""Data-parallel split/merge logic in one process, input collection, and classify_files records."""

from __future__ import annotations

import json

import pytest


def _as_process(monkeypatch, state, index: int, count: int) -> None:
    """Make the (shared) accelerate state look like process ``index`` of ``count``; undone after the test."""
    monkeypatch.setattr(state, "num_processes", count)
    monkeypatch.setattr(state, "process_index", index)


def test_split_is_contiguous_balanced_and_covers_everything(monkeypatch):
    from accelerate import PartialState

    state = PartialState(cpu=True)
    for n in range(10):
        items = list(enumerate(f"x{i}" for i in range(n)))
        for k in range(1, 5):
            parts = []
            for i in range(k):
                _as_process(monkeypatch, state, i, k)
                with state.split_between_processes(items) as mine:
                    parts.append(list(mine))
            assert [pair for part in parts for pair in part] == items  # in process order = input order, once each
            sizes = [len(part) for part in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_a_lost_shard_is_an_error_not_a_short_file(vit_pipe, photo_dir, monkeypatch):
    import accelerate.utils
    from accelerate import PartialState

    from hfvision.inference import classify_files

    _as_process(monkeypatch, PartialState(cpu=True), 0, 2)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda pairs: pairs)  # the other process's pairs never come
    with pytest.raises(RuntimeError, match="did not return each of the 7 inputs once"):
        classify_files(photo_dir, pipe=vit_pipe, batch_size=2, progress=False)


def test_collect_inputs(photo_dir):
    from hfvision.inference import collect_inputs

    names = [p.replace(str(photo_dir) + "/", "") for p in collect_inputs(photo_dir)]
    assert names == [
        "a_astronaut.jpg",
        "b_chelsea.png",
        "d_rocket.jpg",
        "e_camera.bmp",
        "f_empty.png",
        "g_notes.jpg",
        "sub/c_coffee.webp",
    ]
    assert collect_inputs(f"{photo_dir}/*.txt") == [str(photo_dir / "readme.txt")]  # globs take what they match
    both = collect_inputs([photo_dir / "b_chelsea.png", f"{photo_dir}/[ab]_*", photo_dir / "b_chelsea.png"])
    assert both == [str(photo_dir / "b_chelsea.png"), str(photo_dir / "a_astronaut.jpg")]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        collect_inputs(photo_dir / "missing")
    with pytest.raises(ValueError, match="no image files found"):
        collect_inputs(f"{photo_dir}/*.gif")


def test_sharded_runs_merge_to_the_single_process_records(
    vit_pipe, photo_dir, tmp_path, same_predictions, monkeypatch
):
    from accelerate import PartialState

    from hfvision.data import load_image
    from hfvision.inference import classify_files, collect_inputs
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
    state = PartialState(cpu=True)
    for count in (2, 3):
        merged = []  # what gather_object hands every process: the shards' pairs in process order
        for i in range(count):
            _as_process(monkeypatch, state, i, count)
            with state.split_between_processes(list(enumerate(files))) as mine:
                merged += [record for _, record in _classify_shard(vit_pipe, mine, 2, {}, False)]
        assert [r["file"] for r in merged] == files and [set(r) for r in merged] == [set(r) for r in single]
        same_predictions([r.get("predictions", []) for r in merged], [r.get("predictions", []) for r in single])
