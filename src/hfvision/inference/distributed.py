"""Data-parallel split and merge: each process takes a contiguous shard; the merged result is in input order.

The split rule is accelerate's ``split_between_processes`` (contiguous, the first ``n % k`` shards one longer),
written as pure functions so it can be tested without launching processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` of ``count`` over ``n`` items.

    >>> [shard_bounds(5, i, 2) for i in range(2)]
    [(0, 3), (3, 5)]
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in [0, {count})")
    base, extra = divmod(n, count)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def shard(items: Sequence[T], index: int, count: int) -> list[tuple[int, T]]:
    """Shard ``index`` of ``count`` as ``(position in items, item)`` pairs."""
    start, stop = shard_bounds(len(items), index, count)
    return [(i, items[i]) for i in range(start, stop)]


def merge_shards(shards: Sequence[Sequence[tuple[int, Any]]], total: int) -> list[Any]:
    """Merge ``(position, value)`` shards into one list in input order; every position must appear exactly once."""
    merged: list[Any] = [None] * total
    seen = [False] * total
    for part in shards:
        for position, value in part:
            if not 0 <= position < total or seen[position]:
                raise RuntimeError(f"data-parallel merge: position {position} is out of range or duplicated")
            merged[position], seen[position] = value, True
    missing = [i for i, ok in enumerate(seen) if not ok]
    if missing:
        raise RuntimeError(f"data-parallel merge: {len(missing)} input(s) missing, e.g. position {missing[0]}")
    return merged
