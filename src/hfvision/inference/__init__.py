"""Batch inference: ``classify_files`` over image files, ``classify_dataset`` over a ``datasets`` dataset (sharded,
resumable parquet); single process or data-parallel under ``accelerate launch``."""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

_LAZY = {
    "classify_files": "classify",
    "write_jsonl": "classify",
    "collect_inputs": "inputs",
    "classify_dataset": "dataset",
    "read_predictions": "dataset",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
