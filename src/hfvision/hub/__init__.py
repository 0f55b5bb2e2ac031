"""Hugging Face Hub integration: Hub-backed DreamBooth sessions (more helpers live in sibling modules).

Names load lazily, so ``import hfvision.hub`` does not import ``huggingface_hub``; that matters because
huggingface_hub reads ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` once, when it is first imported.

>>> from hfvision.hub import HubSessionMirror
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfvision.utils.lazy import lazy_exports

# public name -> module defining it; other hub modules add their entries here
_LAZY = {
    "HubSessionMirror": "hfvision.hub.sessions",
    "write_endpoint_files": "hfvision.hub.endpoints",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .endpoints import write_endpoint_files  # noqa: F401
    from .sessions import HubSessionMirror  # noqa: F401
