"""Batch inference over image files: ``classify_files`` (single process or data-parallel under ``accelerate launch``)."""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

_LAZY = {
    "classify_files": "classify",
    "write_jsonl": "classify",
    "collect_inputs": "inputs",
    "shard": "distributed",
    "shard_bounds": "distributed",
    "merge_shards": "distributed",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
