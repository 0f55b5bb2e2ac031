"""Round trips through `LocalHubServer` with the real clients: huggingface_hub, transformers and diffusers.

huggingface_hub reads `HF_ENDPOINT` / `HF_HUB_OFFLINE` once, at import time, so every client runs in a fresh
interpreter configured with `hub_env` (and its own `HF_HOME`, so downloads really go through the server).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hfvision.testing.hub_server import LocalHubServer, hub_env

pytestmark = pytest.mark.hub

HUB_CLIENT = r"""
import json, sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

src, api, repo = Path(sys.argv[1]), HfApi(), "user/roundtrip"
assert api.whoami()["name"] == "user"
assert api.create_repo("roundtrip").repo_id == repo  # bare name -> namespace of the token's user
assert api.create_repo(repo, exist_ok=True).repo_id == repo
with pytest.raises(HfHubHTTPError) as conflict:
    api.create_repo(repo)
assert conflict.value.response.status_code == 409

c1 = api.upload_folder(folder_path=src, repo_id=repo).oid
expected = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
assert sorted(api.list_repo_files(repo)) == expected
assert api.model_info(repo).sha == c1
for name in expected:
    assert Path(hf_hub_download(repo, name)).read_bytes() == (src / name).read_bytes(), name
snapshot = snapshot_download(repo)
check = api.verify_repo_checksums(repo, revision=c1)
assert check.checked_count == len(expected) and not check.mismatches and not check.missing_paths

c2 = api.upload_file(path_or_fileobj=b"v2", path_in_repo="config.json", repo_id=repo).oid
assert c2 != c1 and api.repo_info(repo).sha == c2
assert Path(hf_hub_download(repo, "config.json")).read_bytes() == b"v2"
assert Path(hf_hub_download(repo, "config.json", revision=c1)).read_bytes() == (src / "config.json").read_bytes()
api.delete_folder("nested", repo_id=repo)
assert not api.file_exists(repo, "nested/deeper/data.txt")
assert api.file_exists(repo, "nested/deeper/data.txt", revision=c1)
pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo, create_pr=True)
assert pr.pr_num == 1 and not api.file_exists(repo, "pr.txt")
assert Path(hf_hub_download(repo, "pr.txt", revision="refs/pr/1")).read_bytes() == b"pr"

with pytest.raises(EntryNotFoundError):
    hf_hub_download(repo, "missing.txt")
with pytest.raises(RepositoryNotFoundError):
    hf_hub_download("user/missing", "config.json")
with pytest.raises(RevisionNotFoundError):
    hf_hub_download(repo, "config.json", revision="no-such-branch")
assert api.repo_exists(repo) and not api.repo_exists("user/missing")

api.create_repo("user/data", repo_type="dataset")
api.upload_file(path_or_fileobj=b"a,b\n", path_in_repo="train.csv", repo_id="user/data", repo_type="dataset")
assert Path(hf_hub_download("user/data", "train.csv", repo_type="dataset")).read_bytes() == b"a,b\n"
api.delete_repo("user/data", repo_type="dataset")
assert not api.repo_exists("user/data", repo_type="dataset")
print(json.dumps({"snapshot": snapshot}))
"""

PUSH_MODELS = """
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification

torch.manual_seed(0)
config = ViTConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8,
    num_labels=2,
)
vit = ViTForImageClassification(config)
unet = UNet2DModel(
    sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4,
    down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
)
for name, model in (("vit", vit), ("unet", unet)):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{sys.argv[1]}/{name}.safetensors")
vit.push_to_hub("user/tiny-vit")
unet.push_to_hub("tiny-unet")  # bare name: the server puts it in the token user's namespace
"""

LOAD_MODELS = """
import json, sys

import torch
from diffusers import UNet2DModel
from huggingface_hub import list_repo_files
from safetensors.torch import load_file
from transformers import ViTForImageClassification

report = {}
models = {"vit": (ViTForImageClassification, "user/tiny-vit"), "unet": (UNet2DModel, "user/tiny-unet")}
for name, (cls, repo_id) in models.items():
    expected, actual = load_file(f"{sys.argv[1]}/{name}.safetensors"), cls.from_pretrained(repo_id).state_dict()
    report[name] = {
        "mismatched_keys": sorted(set(actual) ^ set(expected)),
        "different_values": [k for k in expected if k in actual and not torch.equal(actual[k], expected[k])],
        "files": list_repo_files(repo_id),
    }
print(json.dumps(report))
"""


def _run(server: LocalHubServer, home: Path, code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter pointed at `server`, with `HF_HOME=home`; returns its last stdout line."""
    env = {**os.environ, **hub_env(server.endpoint), "HF_HOME": str(home)}
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"client process failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with LocalHubServer(tmp_path_factory.mktemp("hub")) as hub:
        yield hub


@pytest.fixture(scope="module")
def model_round_trip(server: LocalHubServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Push a seeded tiny ViT (transformers) and UNet (diffusers) from one process, load both back in another.

    Both libraries share the two (slow to import) client processes; returns the loading process's report.
    """
    out = tmp_path_factory.mktemp("models")
    _run(server, out / "push_hf_home", PUSH_MODELS, str(out))
    return json.loads(_run(server, out / "load_hf_home", LOAD_MODELS, str(out)))


def test_huggingface_hub_round_trip(server: LocalHubServer, tmp_path: Path):
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "README.md").write_text("---\nlicense: mit\n---\n# Round trip\n")
    (src / "config.json").write_text(json.dumps({"hidden_size": 32}))
    (src / "nested" / "deeper" / "data.txt").write_text("nested\n")
    (src / "nested" / "image.png").write_bytes(bytes(range(256)) * 4)  # binary, committed as a regular file
    (src / "weights.bin").write_bytes(os.urandom(100_000))  # presented as an LFS file (sha256 ETag)
    (src / "empty.txt").write_bytes(b"")

    out = json.loads(_run(server, tmp_path / "hf_home", HUB_CLIENT, str(src)))

    assert _files(Path(out["snapshot"])) == _files(src)


def test_transformers_push_to_hub_then_from_pretrained(model_round_trip: dict):
    vit = model_round_trip["vit"]
    assert vit["mismatched_keys"] == [] and vit["different_values"] == []
    assert {"config.json", "model.safetensors", "README.md"} <= set(vit["files"])


def test_diffusers_push_to_hub_then_from_pretrained(model_round_trip: dict):
    unet = model_round_trip["unet"]
    assert unet["mismatched_keys"] == [] and unet["different_values"] == []
    assert {"config.json", "diffusion_pytorch_model.safetensors", "README.md"} <= set(unet["files"])


def _call(server: LocalHubServer, method: str, path: str, body: bytes | None = None, **headers: str):
    request = urllib.request.Request(server.endpoint + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_protocol_details(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    auth = {"Authorization": "Bearer anything"}
    with LocalHubServer(tmp_path) as server:
        assert server.endpoint.startswith("http://127.0.0.1:") and server.url == server.endpoint
        create = json.dumps({"name": "secret", "organization": "org", "type": "dataset", "private": True}).encode()
        assert _call(server, "POST", "/api/repos/create", create, **auth)[0] == 200
        commit = [{"key": "header", "value": {"summary": "add"}}, {"key": "file", "value": {"path": "a.txt"}}]
        commit[1]["value"].update(content="aGVsbG8gd29ybGQ=", encoding="base64")  # b"hello world"
        status, _, body = _call(server, "POST", "/api/datasets/org/secret/commit/main", _ndjson(commit), **auth)
        sha = json.loads(body)["commitOid"]
        assert status == 200 and len(sha) == 40

        url = "/datasets/org/secret/resolve/main/a.txt"
        status, headers, body = _call(server, "HEAD", url, **auth)
        git_oid = hashlib.sha1(b"blob 11\0hello world").hexdigest()
        assert (status, headers["Content-Length"], headers["X-Repo-Commit"], body) == (200, "11", sha, b"")
        assert headers["ETag"] == f'"{git_oid}"'
        status, headers, body = _call(server, "GET", url, Range="bytes=6-", **auth)
        assert (status, headers["Content-Range"], body) == (206, "bytes 6-10/11", b"world")
        assert _call(server, "GET", url, Range="bytes=50-", **auth)[0] == 416
        assert _call(server, "GET", f"/datasets/org/secret/resolve/{sha}/a.txt", **auth)[2] == b"hello world"

        for path, code in [
            (url, "RepoNotFound"),  # private repo, no token
            ("/datasets/org/secret/resolve/nope/a.txt", "RevisionNotFound"),
            ("/datasets/org/secret/resolve/main/b.txt", "EntryNotFound"),
            ("/api/datasets/org/missing", "RepoNotFound"),
        ]:
            status, headers, _ = _call(server, "GET", path, **({} if code == "RepoNotFound" else auth))
            assert (status, headers["X-Error-Code"]) == (404, code), path
        with caplog.at_level(logging.WARNING, logger="hfvision.testing.hub_server"):
            status, _, body = _call(server, "GET", "/api/not-an-endpoint")
        assert status == 404 and "error" in json.loads(body) and "/api/not-an-endpoint" in caplog.text

    with LocalHubServer(tmp_path) as restarted:  # repos persist on disk
        assert _call(restarted, "GET", url, **auth)[2] == b"hello world"


def _ndjson(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)
