"""Base models and ControlNets as data, and loading from any source (registry key, directory, file, URL, Hub).

>>> from hfvision.models import get_base_model, list_controlnets, load_pipeline
>>> get_base_model("sd21").resolution
768
>>> list_controlnets("sd21")
['canny', 'depth', 'hed', 'openpose', 'scribble']
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

# public name -> submodule (imported on first use so `import hfvision.models` stays light)
_LAZY = {
    "BASE_MODELS": "registry",
    "BaseModel": "registry",
    "Family": "families",
    "get_family": "families",
    "get_base_model": "registry",
    "list_base_models": "registry",
    "validate_training_resolution": "registry",
    "CONTROLNETS": "controlnets",
    "ControlNetEntry": "controlnets",
    "check_controlnet_compatibility": "controlnets",
    "controlnet_family": "controlnets",
    "get_controlnet": "controlnets",
    "list_controlnets": "controlnets",
    "load_controlnet": "controlnets",
    "download_url": "download",
    "classify_source": "loading",
    "load_pipeline": "loading",
}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
