"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: A trainer's checkpoint folder name (``checkpoint-<step>``, as transformers' Trainer and accelerate scripts write).
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """``.../checkpoint-1500`` -> 1500; ``None`` for any other name (``.checkpoint-1500.tmp``, ``checkpoint-x``)."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match[1]) if match else None


@functools.cache
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that needs a file name; on success the file is synced
    to disk and replaces ``path`` atomically, on error it is removed.

    >>> with atomic_path("model.safetensors") as tmp:
    ...     safetensors.torch.save_file(state_dict, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically (see `atomic_path`).

    >>> with atomic_write("out.json", "w") as f:
    ...     f.write("{}")
    """
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    Args:
        path (`str` or `os.PathLike`): final directory.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace an existing non-empty ``path``; otherwise such a path is an error.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; choose another directory or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the mode a plain mkdir() would
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()
