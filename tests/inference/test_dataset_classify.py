"""``classify_dataset``: a ``datasets`` dataset into sharded parquet, resumable after a crash, data-parallel.

In-process tests cover the sharding and resume logic (a crash injected into the pipeline: only the missing shards are
recomputed, finished shards are left untouched, the result equals an uninterrupted run). The slow test runs two
processes under ``accelerate launch``, SIGKILLs one mid-run, resumes and compares with a one-process run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


class CountingPipe:
    """Wraps a pipeline: counts calls and, with ``fail_at``, raises on that call (a crash mid-run)."""

    def __init__(self, pipe, fail_at: int | None = None):
        self.pipe, self.fail_at, self.calls = pipe, fail_at, 0

    def __call__(self, images, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.pipe(images, **kwargs)


def _shards(out):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.glob("part-*.parquet"))}


def test_imagefolder_dataset_matches_classify_files(vit_pipe, photo_dir, tmp_path, same_predictions):
    from hfvision.inference import classify_files
    from hfvision.inference.dataset import classify_dataset, read_predictions

    summary = classify_dataset(
        photo_dir, output_dir=tmp_path / "out", pipe=vit_pipe, shard_size=3, top_k=2, progress=False
    )
    assert (summary.num_rows, summary.num_shards, summary.written, summary.errors) == (7, 3, [0, 1, 2], 2)
    table = read_predictions(tmp_path / "out").to_pylist()
    files = classify_files(photo_dir, pipe=vit_pipe, top_k=2, progress=False)
    by_file = {r["file"]: r for r in files}
    assert sorted(by_file) == sorted(row["id"] for row in table) and [r["index"] for r in table] == list(range(7))
    for row in table:
        want = by_file[row["id"]]
        if "error" in want:
            assert row["labels"] is None and row["error"] == want["error"]
        else:
            got = [{"label": label, "score": score} for label, score in zip(row["labels"], row["scores"])]
            same_predictions(got, want["predictions"])  # same decoding; other batches round differently


def test_resume_after_a_crash_recomputes_only_missing_shards(vit_pipe, photo_dir, tmp_path):
    from hfvision.inference.dataset import classify_dataset, read_predictions

    kwargs = dict(pipe=None, shard_size=2, top_k=2, progress=False)
    reference = tmp_path / "reference"
    classify_dataset(photo_dir, output_dir=reference, **{**kwargs, "pipe": CountingPipe(vit_pipe)})
    out = tmp_path / "out"
    crashing = CountingPipe(vit_pipe, fail_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        classify_dataset(photo_dir, output_dir=out, **{**kwargs, "pipe": crashing})
    before = _shards(out)
    assert sorted(before) == ["part-00000.parquet"]  # shard 0 done, 1 crashed, 2 and 3 not run
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # nothing half-written
    with pytest.raises(RuntimeError, match=r"missing \[2, 3, 4, 5, 6\]"):
        read_predictions(out)
    (out / ".part-00001.parquet.x1y2.tmp").write_bytes(b"left by a SIGKILL")  # what a killed process leaves
    resumed = CountingPipe(vit_pipe)
    summary = classify_dataset(photo_dir, output_dir=out, **{**kwargs, "pipe": resumed})
    # shard 2 (rows 4, 5) holds only the two unreadable files: no model call
    assert summary.skipped == 1 and summary.written == [1, 2, 3] and resumed.calls == 2
    after = _shards(out)
    assert {name: after[name] for name in before} == before  # finished shards untouched
    assert sorted(os.listdir(out)) == ["_run.json", *[f"part-0000{k}.parquet" for k in range(4)]]
    assert read_predictions(out).equals(read_predictions(reference))
    again = CountingPipe(vit_pipe)
    assert classify_dataset(photo_dir, output_dir=out, **{**kwargs, "pipe": again}).written == [] and again.calls == 0
    with pytest.raises(ValueError, match=r"holds a run with shard_size=2 \(now 3\); resume with the same settings"):
        classify_dataset(photo_dir, output_dir=out, **{**kwargs, "pipe": vit_pipe, "shard_size": 3})


def test_parquet_dataset_streaming_equals_prepared(vit_pipe, tmp_path):
    """Parquet with image bytes and an id column; the streaming reader writes the same shards as the prepared one."""
    import datasets

    from hfvision.inference.dataset import classify_dataset, read_predictions
    from hfvision.testing import sample_image

    names = ["astronaut", "chelsea", "coffee", "rocket", "camera"]
    features = datasets.Features({"name": datasets.Value("string"), "photo": datasets.Image()})
    rows = {"name": names, "photo": [sample_image(n).resize((48, 40)) for n in names]}
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(data_dir / "train.parquet")
    common = dict(pipe=vit_pipe, shard_size=2, id_column="name", progress=False)
    prepared = classify_dataset(data_dir, output_dir=tmp_path / "prepared", **common)
    streamed = classify_dataset(data_dir / "train.parquet", output_dir=tmp_path / "streamed", streaming=True, **common)
    assert (streamed.num_rows, streamed.num_shards, streamed.written) == (5, 3, [0, 1, 2])
    a, b = read_predictions(tmp_path / "prepared"), read_predictions(tmp_path / "streamed")
    assert a.equals(b) and a.column("id").to_pylist() == names and prepared.errors == 0
    assert a.column("labels").to_pylist()[0] in (["female", "male"], ["male", "female"])


def test_bad_arguments_fail_before_loading_a_model(photo_dir, tmp_path):
    from hfvision.inference.dataset import classify_dataset, pending_shards

    assert pending_shards(7, 3, {1}) == [0, 2] and pending_shards(0, 3, set()) == []
    never = CountingPipe(None)
    with pytest.raises(ValueError, match="shard_size=0 must be a positive integer"):
        classify_dataset(photo_dir, output_dir=tmp_path / "o", pipe=never, shard_size=0)
    with pytest.raises(ValueError, match=r"--image-column 'picture' is not a column of .* \(image\)"):
        classify_dataset(photo_dir, output_dir=tmp_path / "o", pipe=never, image_column="picture")
    with pytest.raises(ValueError, match="split='test' is not in .*; it has train"):
        classify_dataset(photo_dir, output_dir=tmp_path / "o", pipe=never, split="test")
    with pytest.raises(FileNotFoundError, match="no such dataset folder or file"):
        classify_dataset(str(tmp_path / "nowhere"), output_dir=tmp_path / "o", pipe=never)
    assert never.calls == 0


def test_cli_dataset_flags(tiny_model_dir, photo_dir, tmp_path, capsys):
    from hfvision.cli.main import main
    from hfvision.inference.dataset import read_predictions

    base = ["classify", "--model", str(tiny_model_dir("vit")), "--dataset", str(photo_dir), "--no-progress"]
    assert main([*base, "--output", "x.jsonl"]) == 2
    assert (
        "--output does not go with --dataset; write the predictions with --output-dir DIR" in capsys.readouterr().err
    )
    assert main(base) == 2 and "--dataset needs --output-dir DIR" in capsys.readouterr().err
    assert main([*base, "--output-dir", str(tmp_path / "out"), "--shard-size", "4", "--top-k", "1"]) == 0
    assert "classified 7 row(s)" in capsys.readouterr().out and read_predictions(tmp_path / "out").num_rows == 7
    assert main(["classify", "--model", "m"]) == 2 and "pass --input FILES and --output" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process(tiny_model_dir, tmp_path, accelerate_launch):
    """`accelerate launch` (2 CPU processes): SIGKILL one worker mid-run, rerun, compare with a 1-process run."""
    import psutil

    from hfvision.inference.dataset import read_predictions
    from hfvision.testing import sample_image

    data = tmp_path / "images"
    data.mkdir()
    for i in range(80):  # 80 small distinct images: 40 shards of 2
        sample_image(("astronaut", "chelsea", "coffee", "rocket")[i % 4]).rotate(i).resize((32, 32)).save(
            data / f"{i:03d}.png"
        )
    common = [
        "classify",
        "--model",
        str(tiny_model_dir("vit")),
        "--dataset",
        str(data),
        "--shard-size",
        "2",
        "--batch-size",
        "2",
        "--top-k",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-m", "hfvision.cli.main", *common, "--output-dir", str(tmp_path / "single")],
        env=env,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "double"
    command = accelerate_launch(*common, "--output-dir", str(out), port=29531)
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")):  # kill as soon as the first shard lands
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
        time.sleep(0.005)
    workers = [
        p
        for p in psutil.Process(launcher.pid).children(recursive=True)
        if "hfvision.cli.main" in " ".join(p.cmdline())
    ]
    assert len(workers) == 2, workers
    workers[1].send_signal(signal.SIGKILL)
    launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    killed = _shards(out)
    assert 0 < len(killed) < 40, sorted(killed)
    resumed = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    after = _shards(out)
    assert len(after) == 40 and {name: after[name] for name in killed} == killed  # finished shards were skipped
    single, double = read_predictions(tmp_path / "single"), read_predictions(out)
    assert double.num_rows == 80 and double.equals(single)


HUB_DATASET = """
import json
import datasets
from huggingface_hub import HfApi
import hfvision
from hfvision.inference.dataset import classify_dataset, read_predictions
from hfvision.testing import sample_image

names = ["astronaut", "chelsea", "coffee", "rocket", "camera"]
features = datasets.Features({"name": datasets.Value("string"), "photo": datasets.Image()})
rows = {"name": names, "photo": [sample_image(n).resize((48, 40)) for n in names]}
datasets.Dataset.from_dict(rows, features=features).to_parquet("test.parquet")
# (Dataset.push_to_hub deletes its temporary parquet before the local server's inline commit reads it: upload it)
api = HfApi()
api.create_repo("user/photos", repo_type="dataset")
api.upload_file(path_or_fileobj="test.parquet", path_in_repo="data/test-00000-of-00001.parquet",
                repo_id="user/photos", repo_type="dataset")
pipe = hfvision.pipeline("gender-classification", model=MODEL_DIR)
common = dict(pipe=pipe, shard_size=2, id_column="name", progress=False)
classify_dataset("user/photos", output_dir="hub", **common)
classify_dataset("user/photos", output_dir="stream", split="test", streaming=True, **common)
classify_dataset("test.parquet", output_dir="local", **common)
tables = [read_predictions(d) for d in ("hub", "stream", "local")]
print(json.dumps([tables[0].equals(t) for t in tables[1:]] + [tables[0].column("id").to_pylist()]))
"""


@pytest.mark.hub
def test_hub_dataset_prepared_and_streaming(tiny_model_dir, local_hub, run_python):
    """A Hub dataset (the local Hub server), read prepared and streaming, gives the shards of the same local file."""
    import json

    out = run_python(HUB_DATASET.replace("MODEL_DIR", repr(str(tiny_model_dir("vit")))), hub=local_hub)
    assert json.loads(out.splitlines()[-1]) == [True, True, ["astronaut", "chelsea", "coffee", "rocket", "camera"]]
