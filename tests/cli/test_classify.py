"""``hfvision classify``: in-process runs, and a 2-process data-parallel run under ``accelerate launch``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from hfvision.testing import sample_image

    root = tmp_path_factory.mktemp("cli-photos")
    for i, name in enumerate(("astronaut", "chelsea", "coffee", "rocket", "camera")):
        sample_image(name).resize((200, 200)).save(root / f"{i}_{name}.png")
    (root / "5_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def _read(path):
    return [json.loads(line) for line in open(path)]


def test_classify_writes_one_line_per_input_and_reports_bad_files(tiny_model_dir, photos, tmp_path, capsys):
    from hfvision.cli.main import main

    out = tmp_path / "preds.jsonl"
    args = ["classify", "--model", str(tiny_model_dir("vit")), "--input", str(photos), "--output", str(out)]
    assert main([*args, "--batch-size", "2", "--top-k", "1", "--no-progress"]) == 0
    assert "classified 5 image(s), 1 unreadable (skipped, see the warnings)" in capsys.readouterr().out
    records = _read(out)
    assert [os.path.basename(r["file"]) for r in records] == sorted(os.listdir(photos))
    assert records[5]["error"].startswith("corrupt:") or records[5]["error"].startswith("truncated:")
    assert all(len(r["predictions"]) == 1 for r in records[:5])

    import hfvision

    pipe = hfvision.pipeline("gender-classification", model=tiny_model_dir("vit"))
    for record in records[:5]:
        expected = pipe(record["file"], top_k=1)[0]
        assert record["predictions"][0]["label"] == expected["label"]
        assert abs(record["predictions"][0]["score"] - expected["score"]) < 1e-6

    faces_out = tmp_path / "faces.jsonl"
    assert main([*args[:-1], str(faces_out), "--faces", "--batch-size", "auto", "--no-progress"]) == 0
    faces = _read(faces_out)
    assert [len(r["faces"]) for r in faces[:5]] == [1, 0, 0, 0, 1]  # the astronaut and the cameraman


def test_classify_rejects_bad_arguments(tiny_model_dir, photos, tmp_path, capsys):
    from hfvision.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--input", str(photos), "--output", str(tmp_path / "x"), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "--batch-size '0': use a positive integer or 'auto'" in capsys.readouterr().err
    code = main(
        [
            "classify",
            "--model",
            str(tiny_model_dir("vit")),
            "--input",
            str(tmp_path / "nowhere"),
            "--output",
            str(tmp_path / "x"),
        ]
    )
    assert code == 1 and "nowhere: no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_accelerate_launch_matches_a_single_process(tiny_model_dir, photos, tmp_path, accelerate_launch):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine: two gloo processes (MULTI_CPU)."""
    model = str(tiny_model_dir("vit"))
    common = ["classify", "--model", model, "--input", str(photos), "--batch-size", "2", "--no-progress", "--verbose"]
    single, double = tmp_path / "single.jsonl", tmp_path / "double.jsonl"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-m", "hfvision.cli.main", *common, "--output", str(single)],
        env=env,
        check=True,
        capture_output=True,
    )
    launched = subprocess.run(
        accelerate_launch(*common, "--output", str(double), port=29517),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "process 1/2: 3 of 6 files" in launched.stderr and "process 2/2: 3 of 6 files" in launched.stderr
    a, b = _read(single), _read(double)
    assert [r["file"] for r in b] == [r["file"] for r in a] and [set(r) for r in b] == [set(r) for r in a]
    for ra, rb in zip(a, b):
        for pa, pb in zip(ra.get("predictions", []), rb.get("predictions", [])):
            assert pa["label"] == pb["label"] and abs(pa["score"] - pb["score"]) < 1e-6
