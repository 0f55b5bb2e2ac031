"""Small shared helpers: logging, optional-dependency checks, atomic file output."""

from .import_utils import is_available, require
from .io import atomic_dir, atomic_write, sha256_file
from .logging import get_logger

__all__ = ["atomic_dir", "atomic_write", "get_logger", "is_available", "require", "sha256_file"]
