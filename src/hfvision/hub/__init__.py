"""Hugging Face Hub integration: Hub-backed DreamBooth sessions (more helpers live in sibling modules).

Names load lazily, so ``import hfvision.hub`` does not import ``huggingface_hub``; that matters because
huggingface_hub reads ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` once, when it is first imported.

>>> from hfvision.hub import HubSessionMirror
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> module defining it; other hub modules add their entries here
_LAZY = {
    "HubSessionMirror": "hfvision.hub.sessions",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfvision.hub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .sessions import HubSessionMirror  # noqa: F401
