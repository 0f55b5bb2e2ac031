"""Fixtures for the data tests: fake face detectors (Haar is slow; the real one is tested where it matters)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


@pytest.fixture
def no_faces():
    """A face detector that never finds a face."""
    return lambda image: []


@pytest.fixture(scope="session")
def haar():
    from hfvision.data import HaarFaceDetector

    return HaarFaceDetector()


@pytest.fixture
def tree_digest():
    """``tree_digest(folder)`` -> {relative path: fingerprint} of everything under it, symlinks not followed:
    file bytes (sha256) and mode, symlink targets, folders."""

    def digest(root: Path) -> dict[str, str]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                rel = str(path.relative_to(root))
                st = os.lstat(path)
                if path.is_symlink():
                    out[rel] = f"link:{os.readlink(path)}"
                elif path.is_dir():
                    out[rel] = f"dir:{oct(st.st_mode)}"
                elif path.is_file():
                    out[rel] = (
                        f"file:{oct(st.st_mode)}:{st.st_mtime_ns}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
                    )
                else:
                    out[rel] = f"special:{oct(st.st_mode)}"
        return out

    return digest
