"""HTTP serving with the Hugging Face Inference API wire format and micro-batching (``hfvision serve``).

Needs the ``[serve]`` extra (fastapi, uvicorn); importing this package does not import them.

>>> from hfvision.serving import ServeConfig, create_app, BackgroundServer
>>> app = create_app(ServeConfig(task="image-classification", model="path/to/vit"))  # doctest: +SKIP
>>> with BackgroundServer(app) as server:  # doctest: +SKIP
...     InferenceClient(base_url=server.url).image_classification("cat.jpg")
"""

from __future__ import annotations

from hfvision.utils.lazy import lazy_exports

_LAZY = {
    "ServeConfig": "config",
    "create_app": "app",
    "BackgroundServer": "app",
    "MicroBatcher": "batching",
    "QueueFullError": "batching",
    "BatcherClosedError": "batching",
    "ServerMetrics": "metrics",
    "WireError": "wire",
    "ImageRunner": "tasks",
    "TextToImageRunner": "tasks",
    "load_runner": "tasks",
    "EndpointModel": "inference_endpoints",
}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
