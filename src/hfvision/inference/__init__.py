"""Batch inference over image files: ``classify_files`` (single process or data-parallel under ``accelerate launch``)."""

from __future__ import annotations

import importlib

_LAZY = {
    "classify_files": "classify",
    "write_jsonl": "classify",
    "collect_inputs": "inputs",
    "shard": "distributed",
    "shard_bounds": "distributed",
    "merge_shards": "distributed",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
