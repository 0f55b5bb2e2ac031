"""Turn ``--input`` (a folder, a glob, a file, or a list of them) into a sorted, de-duplicated list of files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from ..data.image_io import IMAGE_EXTENSIONS


def _expand(source: str) -> list[str]:
    path = Path(source)
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if path.is_file():
        return [str(path)]
    if glob.has_magic(source):
        return sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
    raise FileNotFoundError(f"{source}: no such file or folder, and not a glob pattern")


def collect_inputs(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files to classify, in a deterministic order: folders (recursive, image suffixes), globs, files.

    Args:
        sources: one source or several; folders contribute files with an image suffix, globs every matching
            file (so a mis-named or broken file is reported rather than skipped), files themselves.

    Raises:
        `FileNotFoundError`: a source does not exist. `ValueError`: nothing to classify.

    >>> collect_inputs("photos/")
    ['photos/a.jpg', 'photos/sub/b.png']
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: dict[str, None] = {}
    for source in sources:
        for f in _expand(os.fspath(source)):
            files.setdefault(f, None)
    if not files:
        raise ValueError(
            f"no image files found in {', '.join(map(str, sources))} (suffixes {', '.join(IMAGE_EXTENSIONS)})"
        )
    return list(files)
