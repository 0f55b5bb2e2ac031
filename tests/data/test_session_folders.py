import json

import pytest

from hfvision.data import Session
from hfvision.data.sessions import SESSION_FILE
from hfvision.testing import sample_image


def test_create_makes_the_layout_and_open_reads_it_back(tmp_path):
    root = tmp_path / "sessions"
    s = Session.create("dog", root=root, instance_prompt="a photo of sks dog", steps=400)
    for d in (s.raw_dir, s.instance_dir, s.class_dir, s.checkpoints_dir, s.samples_dir):
        assert d.is_dir() and d.parent == root / "dog"
    data = json.loads((root / "dog" / SESSION_FILE).read_text())
    assert data["format"] == "hfvision-session" and data["status"] == "created"
    assert data["settings"] == {"instance_prompt": "a photo of sks dog", "steps": 400}
    by_name, by_path = Session.open("dog", root=root), Session.open(root / "dog")
    assert by_name == by_path == s
    assert s.latest_checkpoint() is None


def test_create_refuses_bad_names_existing_sessions_and_non_json_settings(tmp_path):
    for bad in ("", "../escape", "a/b", ".hidden", "x" * 97):
        with pytest.raises(ValueError, match="session name"):
            Session.create(bad, root=tmp_path)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        Session.create("dog", root=tmp_path, when=object())
    Session.create("dog", root=tmp_path, a=1)
    with pytest.raises(FileExistsError, match="already exists"):
        Session.create("dog", root=tmp_path)
    assert Session.create("dog", root=tmp_path, exist_ok=True, b=2).settings == {"a": 1, "b": 2}
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a session"):
        Session.create("cat", root=tmp_path)


def test_open_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="hfvision session create ghost"):
        Session.open("ghost", root=tmp_path)
    s = Session.create("dog", root=tmp_path)
    s.session_file.write_text(json.dumps({**s.to_dict(), "version": 99}))
    with pytest.raises(ValueError, match="upgrade hfvision"):
        Session.open(s.path)
    s.session_file.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Session.open(s.path)


def test_latest_checkpoint_is_the_highest_step_and_ignores_other_names(tmp_path):
    s = Session.create("dog", root=tmp_path)
    for name in (
        "checkpoint-5",
        "checkpoint-40",
        "checkpoint-300",
        "checkpoint-abc",
        ".checkpoint-999.tmp",
        "checkpoint-1000.old",
    ):
        (s.checkpoints_dir / name).mkdir()
    (s.checkpoints_dir / "checkpoint-5000").write_text("a file, not a folder")
    assert s.latest_checkpoint() == s.checkpoints_dir / "checkpoint-300"
    assert [p.name for p in s.checkpoints()] == ["checkpoint-5", "checkpoint-40", "checkpoint-300"]


def test_record_run_and_atomic_save(tmp_path):
    s = Session.create("dog", root=tmp_path)
    s.status = "training"
    s.record_run({"steps": 10, "seed": 0})
    back = Session.open(s.path)
    assert back.status == "training" and back.runs[0]["steps"] == 10 and "recorded_at" in back.runs[0]
    good = s.session_file.read_bytes()
    s.settings["bad"] = {1, 2}
    with pytest.raises(ValueError, match="JSON-serialisable"):
        s.save()
    assert s.session_file.read_bytes() == good  # the previous file is intact
    assert sorted(p.name for p in s.path.iterdir() if p.is_file()) == [SESSION_FILE]  # no temp files left


def test_prepare_handles_only_new_raw_photos_and_prunes_removed_ones(tmp_path):
    s = Session.create("cat", root=tmp_path, instance_prompt="a photo of sks cat", caption_from_filename=True)
    sample_image("chelsea").save(s.raw_dir / "sks cat (1).jpg", quality=90)
    sample_image("coffee").save(s.raw_dir / "coffee.jpg", quality=90)
    assert len(s.pending_raw_images()) == 2
    report = s.prepare(64, crop="center")
    assert [e.status for e in report.entries] == ["accepted", "accepted"] and s.status == "prepared"
    assert [e.caption for e in report.entries] == ["coffee", "sks cat"]  # from the session's settings
    assert s.pending_raw_images() == [] and len(s.instance_images()) == 2
    sample_image("rocket").save(s.raw_dir / "rocket.jpg", quality=90)
    assert [p.name for p in s.pending_raw_images()] == ["rocket.jpg"]
    report = s.prepare(64, crop="center")
    assert {e.source: e.status for e in report.entries} == {
        "coffee.jpg": "skipped",
        "rocket.jpg": "accepted",
        "sks cat (1).jpg": "skipped",
    }
    (s.raw_dir / "coffee.jpg").unlink()
    report = s.prepare(64, crop="center")
    assert len(report.removed) == 1 and len(s.instance_images()) == 2
    assert Session.open(s.path).last_prepare["images"] == 2
    assert s.describe()["pending_raw_images"] == 0
