"""Safe download of single-file checkpoints from http(s) URLs into a Hugging Face-cache-like folder.

Streamed with a progress bar; a size cap (checked against ``Content-Length`` before anything is written, and again
while streaming); optional sha256 verification; resumable: an interrupted transfer keeps ``<key>.incomplete`` and the
next call continues it with an HTTP ``Range`` request. Finished files are moved into place atomically, so a failed
download (HTTP error, cap exceeded, checksum mismatch) leaves no file behind. Layout, per URL::

    {cache_dir}/urls--{host}--{path}--{hash}/
        blobs/{sha256}                     the file
        blobs/{url-hash}.incomplete        a partial transfer (only while resumable)
        snapshots/{sha256}/{filename}      -> ../../blobs/{sha256}
        refs/main                          sha256 of the current file

>>> path = download_url("https://example.com/model.safetensors", sha256="...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..utils.io import atomic_write, sha256_file
from ..utils.logging import get_logger

logger = get_logger(__name__)

DEFAULT_MAX_BYTES = 32 * 1024**3  # larger than any SD / SDXL / Flux single file
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$HFVISION_CACHE/downloads`` (default ``~/.cache/hfvision/downloads``)."""
    root = os.environ.get("HFVISION_CACHE") or Path.home() / ".cache" / "hfvision"
    return Path(root) / "downloads"


def _slug(text: str, limit: int = 80) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[-limit:] or "file"


def url_cache_folder(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder that holds ``url``'s download (see the module docstring)."""
    parts = urlsplit(url)
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return Path(cache_dir or default_cache_dir()) / f"urls--{_slug(parts.netloc)}--{_slug(parts.path)}--{key}"


def _filename(url: str, filename: str | None) -> str:
    name = filename or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _slug(name, limit=200)
    if name in ("", ".", ".."):
        raise ValueError(f"cannot derive a file name from {url!r}; pass filename=...")
    return name


def cached_download(url: str, cache_dir: str | os.PathLike | None = None, filename: str | None = None) -> Path | None:
    """The finished download of ``url`` if it is in the cache, else ``None``."""
    folder = url_cache_folder(url, cache_dir)
    ref = folder / "refs" / "main"
    if not ref.is_file():
        return None
    path = folder / "snapshots" / ref.read_text().strip() / _filename(url, filename)
    return path if path.is_file() else None


def download_url(
    url: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    sha256: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    force_download: bool = False,
) -> Path:
    """Download ``url`` (http or https) into the cache and return the local file path.

    Args:
        url (`str`): the file's URL.
        cache_dir (`str` or `os.PathLike`, *optional*): cache root (default `default_cache_dir()`).
        filename (`str`, *optional*): file name in the snapshot folder (default: the URL's last path segment).
        max_bytes (`int`, *optional*, defaults to 32 GiB): refuse larger files (``None``: no cap).
        sha256 (`str`, *optional*): expected hex digest; a mismatch deletes the download and raises.
        headers (`dict`, *optional*): extra request headers (e.g. ``Authorization``); never logged.
        timeout (`float`, *optional*, defaults to 60): seconds to wait for the server between reads.
        force_download (`bool`, *optional*): ignore a cached copy.

    Raises:
        `FileNotFoundError` on 404, `ValueError` on other HTTP errors, a file over ``max_bytes`` or a checksum
        mismatch (no file left), `ConnectionError` when the transfer breaks off (the partial file is kept and the next
        call resumes it).
    """
    import httpx
    from filelock import FileLock

    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be downloaded, got {url!r}")
    name = _filename(url, filename)
    expected = sha256.lower() if sha256 else None
    if not force_download:
        cached = cached_download(url, cache_dir, name)
        if cached is not None and (expected is None or cached.parent.name == expected):
            logger.info("using cached %s", cached)
            return cached
    folder = url_cache_folder(url, cache_dir)
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode()).hexdigest()
    partial = blobs / f"{key}.incomplete"
    lock_dir = Path(cache_dir or default_cache_dir()) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{folder.name}.lock")):
        with httpx.Client(follow_redirects=True, timeout=timeout) as client:
            digest = _transfer(client, url, partial, max_bytes, dict(headers or {}), name)
        if expected and digest != expected:
            partial.unlink(missing_ok=True)
            raise ValueError(f"sha256 mismatch for {url}: expected {expected}, got {digest}; the download was deleted")
        blob = blobs / digest
        os.replace(partial, blob)
        snapshot = folder / "snapshots" / digest / name
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        _link(blob, snapshot)
        with atomic_write(folder / "refs" / "main", "w") as f:
            f.write(digest)
    logger.info("downloaded %s to %s", url, snapshot)
    return snapshot


def _transfer(client, url: str, partial: Path, max_bytes: int | None, headers: dict, name: str) -> str:
    """Stream ``url`` into ``partial`` (resuming it when possible); returns the sha256 of the whole file."""
    import httpx
    from huggingface_hub.utils import tqdm

    resume_from = partial.stat().st_size if partial.exists() else 0
    if resume_from:
        headers["Range"] = f"bytes={resume_from}-"
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and resume_from:  # the partial file is already whole (or stale)
                partial.unlink()
                return _transfer(
                    client, url, partial, max_bytes, {k: v for k, v in headers.items() if k != "Range"}, name
                )
            if response.status_code == 404:
                _discard(partial)
                raise FileNotFoundError(f"{url} was not found (HTTP 404)")
            if response.status_code >= 400:
                _discard(partial)
                raise ValueError(f"downloading {url} failed: HTTP {response.status_code} {response.reason_phrase}")
            appending = response.status_code == 206 and _range_start(response) == resume_from
            start = resume_from if appending else 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            _check_cap(url, total, max_bytes, partial)
            hasher = hashlib.sha256()
            if appending:
                with open(partial, "rb") as f:
                    for block in iter(lambda: f.read(_CHUNK), b""):
                        hasher.update(block)
                logger.info("resuming %s at byte %d", url, start)
            received = start
            with (
                open(partial, "ab" if appending else "wb") as out,
                tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name) as bar,
            ):
                for chunk in response.iter_bytes():  # as received, so a broken transfer keeps what arrived
                    received += len(chunk)
                    _check_cap(url, received, max_bytes, partial, out)
                    out.write(chunk)
                    hasher.update(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except httpx.TransportError as err:
        if partial.exists() and partial.stat().st_size:
            raise ConnectionError(
                f"download of {url} broke off ({type(err).__name__}); {partial.stat().st_size} bytes kept in "
                f"{partial}; call again to resume"
            ) from err
        _discard(partial)
        raise ConnectionError(f"cannot download {url}: {err}") from err
    if total is not None and received != total:
        raise ConnectionError(
            f"download of {url} ended after {received} of {total} bytes; the partial file {partial} is kept, call "
            "again to resume"
        )
    return hasher.hexdigest()


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _check_cap(url: str, size: int | None, max_bytes: int | None, partial: Path, handle=None) -> None:
    if max_bytes is not None and size is not None and size > max_bytes:
        if handle is not None:
            handle.close()
        _discard(partial)
        raise ValueError(
            f"{url} is larger than the size cap ({size} > {max_bytes} bytes); raise max_bytes if you trust it"
        )


def _discard(partial: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()


def _link(blob: Path, snapshot: Path) -> None:
    """Point ``snapshot`` at ``blob`` with a relative symlink (a copy where symlinks are not allowed), atomically."""
    tmp = snapshot.with_name(f".{snapshot.name}.tmp")
    _discard(tmp)
    try:
        os.symlink(os.path.relpath(blob, snapshot.parent), tmp)
    except OSError:
        import shutil

        shutil.copyfile(blob, tmp)
    os.replace(tmp, snapshot)


def verify_download(path: str | os.PathLike) -> bool:
    """Whether a file returned by `download_url` still matches the sha256 its snapshot folder is named after."""
    return sha256_file(path) == Path(path).parent.name
