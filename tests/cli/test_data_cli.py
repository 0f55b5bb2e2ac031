import json
import subprocess
import sys

from hfvision.cli.main import main
from hfvision.data import PrepareReport
from hfvision.testing import sample_image


def test_data_prepare_prints_the_table_and_writes_the_report(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    sample_image("coffee").save(src / "sks mug (2).jpg", quality=90)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    code = main(
        [
            "data",
            "prepare",
            str(src),
            str(tmp_path / "out"),
            "--size",
            "64",
            "--crop",
            "center",
            "--caption-from-filename",
            "--report",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["file", "status", "size", "crop", "faces", "output", "caption", "reason", "/", "note"]
    row = next(line for line in lines if line.startswith("sks mug (2).jpg"))
    assert "accepted" in row and "400x400" not in row and "[f] sks mug" in row
    assert "broken.png" in out and "rejected" in out
    assert "1 accepted, 1 rejected, 0 skipped, 0 duplicate" in out
    report = PrepareReport.from_json(tmp_path / "r.json")
    assert report == PrepareReport.from_json(tmp_path / "out" / "prepare_report.json")
    assert report.entry("sks mug (2).jpg").caption == "sks mug" and report.options["size"] == 64


def test_data_prepare_json_output_and_failure_exit_codes(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "x.jpg").write_bytes(b"not a jpeg")
    assert main(["data", "prepare", str(src), str(tmp_path / "o"), "--json", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["counts"]["rejected"] == 1
    assert "no usable image" in captured.err
    assert main(["data", "prepare", str(src), str(tmp_path / "o"), "--size", "500"]) == 2
    assert "--size 500 must be a positive multiple of 8; try 496 or 504" in capsys.readouterr().err
    assert main(["data", "prepare", str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    assert f"SRC {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err


def test_session_create_and_status(tmp_path, capsys):
    root = str(tmp_path / "sessions")
    assert (
        main(
            [
                "session",
                "create",
                "dog",
                "--root",
                root,
                "--instance-prompt",
                "a photo of sks dog",
                "--set",
                "max_train_steps=400",
                "--set",
                "note=first try",
            ]
        )
        == 0
    )
    assert "put the subject's photos" in capsys.readouterr().out
    sample_image("chelsea").save(tmp_path / "sessions" / "dog" / "raw" / "a.jpg")
    (tmp_path / "sessions" / "dog" / "checkpoints" / "checkpoint-20").mkdir()
    assert main(["session", "status", "dog", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "session 'dog'" in out and ": created" in out and "max_train_steps: 400" in out
    assert "1 in raw/ (1 not prepared yet)" in out and "checkpoints: checkpoint-20 (resumes from the last)" in out
    assert main(["session", "status", "dog", "--root", root, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["settings"] == {"max_train_steps": 400, "note": "first try", "instance_prompt": "a photo of sks dog"}
    assert info["latest_checkpoint"].endswith("checkpoint-20")
    assert main(["session", "create", "dog", "--root", root]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["session", "status", "cat", "--root", root]) == 1
    assert "hfvision session create cat" in capsys.readouterr().err


def test_registering_these_commands_stays_light():
    code = (
        "import argparse, sys; from hfvision.cli import data, session; sub = argparse.ArgumentParser()"
        ".add_subparsers(); data.register(sub); session.register(sub); "
        "print(sorted(m for m in ('torch', 'cv2', 'huggingface_hub', 'numpy', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []
