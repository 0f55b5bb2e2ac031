"""The hfvision web UI (``hfvision ui``; needs the ``[ui]`` extra, Gradio). Importing this package imports no Gradio.

>>> from hfvision.ui import UIConfig, launch
>>> demo = launch(UIConfig(model="out/dreambooth-dog"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_LAZY = {
    "UIConfig": "app",
    "build_app": "app",
    "launch": "app",
    "GenerateBackend": "backend",
    "GenerateRequest": "backend",
    "ClassifyBackend": "backend",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
