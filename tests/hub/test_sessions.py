"""Hub-backed sessions against the local Hub server (client code runs in fresh interpreters, because huggingface_hub
reads HF_ENDPOINT at import), plus the upload queue's behaviour in-process with the network calls replaced."""

import json
import threading
import time
from pathlib import Path

import pytest

from hfvision.data import Session
from hfvision.hub import HubSessionMirror


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


UPLOAD = """
import json, os, shutil, time
from huggingface_hub import HfApi, hf_hub_download
from hfvision.data import Session
from hfvision.hub import HubSessionMirror
from PIL import Image

s = Session.create("dog", root="A", instance_prompt="a photo of sks dog")
Image.radial_gradient("L").convert("RGB").resize((200, 120)).save(s.raw_dir / "mug.jpg", quality=90)
(s.raw_dir / "mug.txt").write_text("sks mug")
s.prepare(64, crop="center")

def fake_checkpoint(step):
    d = s.checkpoints_dir / f"checkpoint-{step}"
    (d / "unet").mkdir(parents=True)
    (d / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(300_000))
    (d / "optimizer.bin").write_bytes(os.urandom(40_000))
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return d

mirror = HubSessionMirror("user/dog-session", s)
assert mirror.restore() is s  # a new repo: nothing to restore
mirror.upload_session_files()
c10 = fake_checkpoint(10)
mirror.upload_checkpoint(c10)
shutil.copytree(c10, "ref-checkpoint-10")
shutil.rmtree(c10)  # like checkpoints_total_limit: the trainer deletes it while it may still be uploading
s.record_run({"global_step": 20})
mirror.upload_checkpoint(fake_checkpoint(20))
session_json_at_upload = (s.path / "session.json").read_text()
mirror.close()

api = HfApi()
files = {label: sorted(api.list_repo_files("user/dog-session", revision=sha)) for label, sha in mirror.commits}
sha20 = dict(mirror.commits)["checkpoint-20"]
remote_json = open(hf_hub_download("user/dog-session", "session.json", revision=sha20)).read()
print(json.dumps({
    "labels": [label for label, _ in mirror.commits], "files": files, "dropped": mirror.dropped,
    "private": api.repo_info("user/dog-session").private,
    "session_json_matches": remote_json == session_json_at_upload,
    "staging_left": (s.path / ".hub-staging").exists(),
}))
"""

RESTORE = """
import json
from pathlib import Path
from hfvision.hub import HubSessionMirror

latest = HubSessionMirror("user/dog-session", Path("B/dog")).restore()
everything = HubSessionMirror("user/dog-session", "dog", root="C").restore(checkpoints="all")
print(json.dumps({"latest": str(latest.latest_checkpoint()), "all": [p.name for p in everything.checkpoints()],
                  "hub_repo": latest.hub_repo, "instance_images": len(latest.instance_images())}))
"""


@pytest.mark.hub
def test_session_round_trip_through_the_hub_is_byte_identical(local_hub, run_python, tmp_path):
    up = json.loads(run_python(UPLOAD, hub=local_hub).splitlines()[-1])
    assert up["labels"] == ["session files", "checkpoint-10", "checkpoint-20"] and up["dropped"] == []
    assert up["private"] is True and up["session_json_matches"] and not up["staging_left"]
    # one commit per checkpoint: each commit adds exactly that checkpoint's files, nothing else is missing
    ck = {
        step: [
            f"checkpoints/checkpoint-{step}/{n}"
            for n in ("optimizer.bin", "trainer_state.json", "unet/diffusion_pytorch_model.safetensors")
        ]
        for step in (10, 20)
    }
    files = up["files"]
    assert sorted(set(files["checkpoint-10"]) - set(files["session files"])) == ck[10]
    assert sorted(set(files["checkpoint-20"]) - set(files["checkpoint-10"])) == ck[20]
    assert not any(p.startswith("checkpoints/") for p in files["session files"])

    down = json.loads(run_python(RESTORE, hub=local_hub).splitlines()[-1])
    a, b, c = tmp_path / "A" / "dog", tmp_path / "B" / "dog", tmp_path / "C" / "dog"
    assert down == {
        "latest": str(Path("B/dog/checkpoints/checkpoint-20")),
        "all": ["checkpoint-10", "checkpoint-20"],
        "hub_repo": "user/dog-session",
        "instance_images": 1,
    }
    original = files_under(a)
    assert files_under(b) == original  # checkpoint-10 was deleted locally in A and only the latest is restored
    assert "instance_images/.hfvision-prepared.json" in original and "raw/mug.txt" in original
    ref10 = files_under(tmp_path / "ref-checkpoint-10")
    assert files_under(c) == {**original, **{f"checkpoints/checkpoint-10/{k}": v for k, v in ref10.items()}}
    assert Session.open(b).latest_checkpoint() == b / "checkpoints" / "checkpoint-20"
    assert not list(tmp_path.glob("B/.dog.restore-*"))  # no download leftovers


MERGE_AND_ERRORS = """
import json, os
from huggingface_hub import HfApi
from hfvision.data import Session
from hfvision.hub import HubSessionMirror

out = {}
first = Session.create("cat", root="L1")
(first.raw_dir / "a.jpg").write_bytes(b"hub version")
(first.raw_dir / "b.jpg").write_bytes(b"only on the hub")
(first.checkpoints_dir / "checkpoint-5").mkdir()
(first.checkpoints_dir / "checkpoint-5" / "w.safetensors").write_bytes(b"weights")
with HubSessionMirror("user/cat-session", first) as m:
    m.upload_session_files()
    m.upload_checkpoint(first.checkpoints_dir / "checkpoint-5")
local = Session.create("cat", root="L2", note="local")
(local.raw_dir / "a.jpg").write_bytes(b"local version")
merged = HubSessionMirror("user/cat-session", local).restore()
out["a"] = (merged.raw_dir / "a.jpg").read_bytes().decode()
out["b"] = (merged.raw_dir / "b.jpg").read_bytes().decode()
out["ckpt"] = merged.latest_checkpoint().name
out["settings"] = merged.settings

HfApi().create_repo("user/public-one", private=False)
try:
    HubSessionMirror("user/public-one", local).restore()
except ValueError as err:
    out["public"] = str(err)

bad = HubSessionMirror("user/bad..name", local, retries=0)
bad.upload_session_files()
try:
    bad.wait()
except RuntimeError as err:
    out["failed"] = str(err)
bad.wait()  # errors are reported once
print(json.dumps(out))
"""


@pytest.mark.hub
def test_restore_never_overwrites_local_files_refuses_public_repos_and_reports_failed_uploads(local_hub, run_python):
    out = json.loads(run_python(MERGE_AND_ERRORS, hub=local_hub).splitlines()[-1])
    assert out["a"] == "local version" and out["b"] == "only on the hub" and out["ckpt"] == "checkpoint-5"
    assert out["settings"] == {"note": "local"}  # the local session.json wins
    assert "user/public-one is public" in out["public"]
    assert out["failed"].startswith("1 upload(s) to user/bad..name failed: session files:")


# -- the queue, in-process: network calls replaced ------------------------------------------------------------------
@pytest.fixture
def offline_mirror(tmp_path):
    session = Session.create("dog", root=tmp_path)
    for step in (1, 2, 3):
        (session.checkpoints_dir / f"checkpoint-{step}").mkdir()
        (session.checkpoints_dir / f"checkpoint-{step}" / "w.bin").write_bytes(bytes([step]) * 10)
    mirror = HubSessionMirror("user/dog", session, max_pending=1, retries=2, retry_wait=0.01)
    mirror._ensure_repo = lambda: None
    return session, mirror


def test_newer_checkpoints_supersede_waiting_ones_and_staging_survives_deletion(offline_mirror):
    session, mirror = offline_mirror
    gate, uploaded = threading.Event(), []

    def fake_upload(job):
        gate.wait(10)
        files = {p.relative_to(job.staged).as_posix(): p.read_bytes() for p in job.staged.rglob("*") if p.is_file()}
        uploaded.append((job.label, files))
        return "0" * 40

    mirror._upload_checkpoint = fake_upload
    mirror.upload_checkpoint(session.checkpoints_dir / "checkpoint-1")
    deadline = time.monotonic() + 10
    while not mirror._busy and time.monotonic() < deadline:  # the worker picked up checkpoint-1
        time.sleep(0.005)
    for step in (1, 2, 3):
        if step > 1:
            mirror.upload_checkpoint(session.checkpoints_dir / f"checkpoint-{step}")
        for f in (session.checkpoints_dir / f"checkpoint-{step}").iterdir():
            f.unlink()  # the trainer deletes the files right away; the staged hard links keep the bytes
    assert mirror.pending == 2 and mirror.dropped == ["checkpoint-2"]
    gate.set()
    mirror.close()
    assert [label for label, _ in uploaded] == ["checkpoint-1", "checkpoint-3"]
    assert uploaded[1][1] == {
        "checkpoints/checkpoint-3/w.bin": b"\x03" * 10,
        "session.json": session.session_file.read_bytes(),
    }
    assert not (session.path / ".hub-staging").exists()


def test_transient_errors_are_retried_and_client_errors_are_not(offline_mirror):
    session, mirror = offline_mirror
    calls = []

    class Forbidden(Exception):
        response = type("R", (), {"status_code": 403})()

    def flaky(job):
        calls.append(job.label)
        if job.label == "checkpoint-1" and calls.count("checkpoint-1") == 1:
            raise ConnectionError("connection reset")
        if job.label == "checkpoint-2":
            raise Forbidden("403 Forbidden")
        return "1" * 40

    mirror._upload_checkpoint = flaky
    mirror.upload_checkpoint(session.checkpoints_dir / "checkpoint-1")
    mirror.wait()
    mirror.upload_checkpoint(session.checkpoints_dir / "checkpoint-2")
    with pytest.raises(RuntimeError, match="checkpoint-2: Forbidden: 403 Forbidden"):
        mirror.wait()
    assert calls == ["checkpoint-1", "checkpoint-1", "checkpoint-2"]  # one retry, then no retry for a 403
    assert mirror.commits == [("checkpoint-1", "1" * 40)]
    with pytest.raises(ValueError, match="checkpoint-<step>"):
        mirror.upload_checkpoint(session.checkpoints_dir)
    mirror.close()


def test_restore_checks_files_against_the_hubs_sha256_and_git_blob_ids(tmp_path):
    import hashlib
    from types import SimpleNamespace

    data = b"weights" * 1000
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id, computed independently
    lfs = SimpleNamespace(sha256=hashlib.sha256(data).hexdigest())
    HubSessionMirror._verify(path, SimpleNamespace(path="f.bin", size=len(data), lfs=lfs, blob_id=None))
    HubSessionMirror._verify(path, SimpleNamespace(path="f.bin", size=len(data), lfs=None, blob_id=blob_id))
    for bad in (SimpleNamespace(sha256="0" * 64), None):
        entry = SimpleNamespace(path="f.bin", size=len(data), lfs=bad, blob_id="0" * 40)
        with pytest.raises(RuntimeError, match="checksum"):
            HubSessionMirror._verify(path, entry)
