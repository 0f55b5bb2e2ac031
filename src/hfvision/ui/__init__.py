"""The hfvision web UI (``hfvision ui``; needs the ``[ui]`` extra, Gradio). Importing this package imports no Gradio.

>>> from hfvision.ui import UIConfig, launch
>>> demo = launch(UIConfig(model="out/dreambooth-dog"))  # doctest: +SKIP
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

_LAZY = {
    "UIConfig": "app",
    "build_app": "app",
    "launch": "app",
    "GenerateBackend": "backend",
    "GenerateRequest": "backend",
    "ClassifyBackend": "backend",
}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
