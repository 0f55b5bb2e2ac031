"""Lazy package exports: public names import their submodule on first use, so ``import hfvision.x`` stays light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """Return a module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package (`str`): the package's ``__name__``.
        exports (`Mapping[str, str]`):
            Public name -> defining module: absolute (``"hfvision.data"``), relative with a leading dot
            (``".export"``) or a bare submodule name (``"registry"``).

    >>> __getattr__, __dir__ = lazy_exports(__name__, {"load_pipeline": "loading"})
    """

    def resolve(module: str) -> str:
        if module.startswith("."):
            return package + module
        return module if module.startswith("hfvision.") else f"{package}.{module}"

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(resolve(exports[name])), name)
            setattr(sys.modules[package], name, value)  # cache: later lookups skip __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
