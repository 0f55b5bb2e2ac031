"""Sessions (``--session NAME`` / ``--hub_session user/repo``): the trainer's view of :class:`hfvision.data.Session`
and :class:`hfvision.hub.HubSessionMirror`. Filled in once those modules are available."""

from __future__ import annotations

from .config import DreamBoothConfig


def open_session(config: DreamBoothConfig):
    raise ImportError("--session/--hub_session need hfvision.data.Session, which is not available yet")
