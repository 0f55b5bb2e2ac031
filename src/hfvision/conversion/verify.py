"""Comparing weights after a conversion: missing/unexpected keys, shape mismatches, max difference."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StateDictComparison:
    """Result of :func:`compare_state_dicts` (``expected`` vs ``actual``)."""

    num_tensors: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched_shapes: list[str] = field(default_factory=list)
    max_abs_diff: float = 0.0

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched_shapes) and self.max_abs_diff == 0.0


def compare_state_dicts(expected: Mapping, actual: Mapping, through_dtype=None) -> StateDictComparison:
    """Compare two state dicts key by key (values compared in float32).

    ``through_dtype`` (e.g. ``torch.float16``) first rounds the floating-point ``expected`` values to that
    dtype, so a half-precision export can be checked for *only* fp16 rounding.

    >>> import torch
    >>> compare_state_dicts({"w": torch.ones(2)}, {"w": torch.ones(2)}).exact
    True
    """
    result = StateDictComparison(num_tensors=len(expected))
    result.missing = sorted(expected.keys() - actual.keys())
    result.unexpected = sorted(actual.keys() - expected.keys())
    for key in sorted(expected.keys() & actual.keys()):
        a, b = expected[key], actual[key]
        if through_dtype is not None and a.is_floating_point():
            a = a.to(through_dtype)
        if tuple(a.shape) != tuple(b.shape):
            result.mismatched_shapes.append(key)
            continue
        if a.numel():
            diff = (a.detach().float().cpu() - b.detach().float().cpu()).abs().max().item()
            result.max_abs_diff = max(result.max_abs_diff, diff)
    return result


def compare_pipelines(expected, actual, through_dtype=None) -> dict[str, StateDictComparison]:
    """:func:`compare_state_dicts` for every ``torch.nn.Module`` component the two pipelines share."""
    import torch

    results = {}
    for name, module in expected.components.items():
        other = actual.components.get(name)
        if isinstance(module, torch.nn.Module) and isinstance(other, torch.nn.Module):
            results[name] = compare_state_dicts(module.state_dict(), other.state_dict(), through_dtype)
    return results


def verify_single_file(path: str | os.PathLike, pipeline_dir: str | os.PathLike) -> dict[str, StateDictComparison]:
    """Load ``path`` back with :func:`~hfvision.conversion.from_single_file` and compare it with ``pipeline_dir``.

    A float16 file is compared with the originals rounded to float16, so every ``max_abs_diff`` is 0 for a
    correct conversion.
    """
    import torch
    from diffusers import DiffusionPipeline

    from .loading import from_single_file, inspect_single_file

    half = inspect_single_file(path).metadata.get("hfvision.dtype") == "float16"
    original = DiffusionPipeline.from_pretrained(Path(pipeline_dir), local_files_only=True)
    loaded = from_single_file(path)
    return compare_pipelines(original, loaded, torch.float16 if half else None)
