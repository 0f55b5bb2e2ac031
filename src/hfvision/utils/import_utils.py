"""Optional dependencies fail softly at use, with the extra that provides them."""

from __future__ import annotations

import importlib.util
from functools import cache

# import name -> (pip extra, distribution name)
_EXTRAS = {
    "fastapi": ("serve", "fastapi"),
    "uvicorn": ("serve", "uvicorn"),
    "gradio": ("ui", "gradio"),
    "open_clip": (None, "open-clip-torch"),
    "skimage": (None, "scikit-image"),
    "sklearn": ("testing", "scikit-learn"),
    "tensorboard": ("train", "tensorboard"),
    "bitsandbytes": (None, "bitsandbytes"),
    "playwright": ("dev", "playwright"),
    "ray": ("ray", "ray[serve]"),
}


@cache
def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> None:
    """Raise a one-line ``ImportError`` naming the package to install when ``module`` is missing.

    Args:
        module (`str`): import name, e.g. ``"gradio"``.
        feature (`str`): what needs it, e.g. ``"the web UI"``.
    """
    if is_available(module):
        return
    extra, dist = _EXTRAS.get(module, (None, module))
    hint = f"pip install 'hfvision[{extra}]'" if extra else f"pip install {dist}"
    raise ImportError(f"{feature} needs the '{dist}' package, which is not installed; run: {hint}")
