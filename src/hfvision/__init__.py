"""hfvision: Hugging Face-native image classification, DreamBooth personalisation and deployment.

``import hfvision`` is light: submodules and heavy libraries (torch, transformers, diffusers) load
on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# public name -> module that defines it (imported lazily on first attribute access)
_LAZY = {
    "testing": "hfvision.testing",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) and name not in vars(module) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfvision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from . import testing  # noqa: F401
