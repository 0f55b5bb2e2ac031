"""URL downloads against a local HTTP server: cache layout, sha256, size cap, 404, resume, no partial files left."""

from __future__ import annotations

import hashlib
import os

import pytest

from hfvision.models.download import cached_download, download_url, url_cache_folder, verify_download

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_download_verifies_and_caches(file_server, tmp_path):
    file_server.files["/models/tiny.safetensors"] = DATA
    url = file_server.url + "/models/tiny.safetensors"
    path = download_url(url, cache_dir=tmp_path, sha256=SHA.upper())
    assert path.read_bytes() == DATA and path.name == "tiny.safetensors" and path.is_symlink()
    folder = url_cache_folder(url, tmp_path)
    assert folder.name.startswith("urls--127.0.0.1-") and path.parent == folder / "snapshots" / SHA
    assert files_under(folder) == [f"blobs/{SHA}", "refs/main", f"snapshots/{SHA}/tiny.safetensors"]
    assert (folder / "refs" / "main").read_text() == SHA and verify_download(path)
    assert download_url(url, cache_dir=tmp_path) == path == cached_download(url, tmp_path)
    assert len(file_server.requests) == 1  # the second call was served from the cache
    download_url(url, cache_dir=tmp_path, force_download=True)
    assert len(file_server.requests) == 2


@pytest.mark.parametrize(
    ("path", "kwargs", "error", "match"),
    [
        ("/missing.safetensors", {}, FileNotFoundError, r"not found \(HTTP 404\)"),
        ("/big.safetensors", {"max_bytes": 1000}, ValueError, "larger than the size cap"),
        ("/nolength/big.safetensors", {"max_bytes": 100_000}, ValueError, "larger than the size cap"),
        ("/big.safetensors", {"sha256": "0" * 64}, ValueError, "sha256 mismatch"),
    ],
)
def test_failures_leave_no_files(file_server, tmp_path, path, kwargs, error, match):
    file_server.files["/big.safetensors"] = file_server.files["/nolength/big.safetensors"] = DATA
    url = file_server.url + path
    with pytest.raises(error, match=match):
        download_url(url, cache_dir=tmp_path, **kwargs)
    assert files_under(url_cache_folder(url, tmp_path)) == []
    assert cached_download(url, tmp_path) is None


def test_interrupted_download_resumes_with_range(file_server, tmp_path):
    file_server.files["/flaky/model.safetensors"] = DATA
    url = file_server.url + "/flaky/model.safetensors"
    with pytest.raises(ConnectionError, match="call again to resume"):
        download_url(url, cache_dir=tmp_path, sha256=SHA)
    blobs = url_cache_folder(url, tmp_path) / "blobs"
    (partial,) = blobs.glob("*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < len(DATA)
    path = download_url(url, cache_dir=tmp_path, sha256=SHA)
    assert path.read_bytes() == DATA and not list(blobs.glob("*.incomplete"))
    assert file_server.requests[-1] == ("/flaky/model.safetensors", f"bytes={kept}-")


def test_server_ignoring_range_restarts_cleanly(file_server, tmp_path):
    file_server.files["/norange/model.safetensors"] = DATA
    url = file_server.url + "/norange/model.safetensors"
    blobs = url_cache_folder(url, tmp_path) / "blobs"
    blobs.mkdir(parents=True)
    key = hashlib.sha256(url.encode()).hexdigest()
    (blobs / f"{key}.incomplete").write_bytes(b"stale bytes from another version")
    path = download_url(url, cache_dir=tmp_path, sha256=SHA)
    assert path.read_bytes() == DATA and file_server.requests[-1][1] is not None  # Range asked, 200 answered


def test_only_http_urls(tmp_path):
    with pytest.raises(ValueError, match="only http"):
        download_url("ftp://example.com/model.safetensors", cache_dir=tmp_path)
