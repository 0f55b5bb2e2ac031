"""The runtime half of the Inference Endpoints handler that :func:`hfvision.hub.endpoints.write_endpoint_files` puts in a
repo: :class:`EndpointModel` loads the repo like ``hfvision serve`` would and answers the handler contract's request
dicts with the same runners, parameter validation and one-line errors.

>>> handler = EndpointModel("my-classifier", kind="classifier", task="gender-classification")  # doctest: +SKIP
>>> handler({"inputs": Image.open("photo.jpg"), "parameters": {"top_k": 1}})  # doctest: +SKIP
[{'label': 'female', 'score': 0.93}]
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EndpointModel:
    """What a repo's ``EndpointHandler`` runs: loads the repo like ``hfvision serve`` would, answers a request dict.

    Args:
        path (`str`): the repo's local folder (Inference Endpoints passes it to ``EndpointHandler``).
        kind (`str`): ``classifier``, ``onnx``, ``pipeline`` or ``lora`` (see :mod:`hfvision.hub.endpoints`).
        task (`str`): the served task (``image-classification``, ``gender-classification``,
            ``image-feature-pyramid`` or ``text-to-image``).
        base_model (`str`, *optional*): LoRA repos: the base model to load the weights into.
        base_revision (`str`, *optional*): LoRA repos: the base model's revision.
        device (`str`, *optional*): torch device (default: ``cuda`` when available, else ``cpu``).

    Calling it with ``{"inputs": ..., "parameters": {...}}`` returns ``[{"label", "score"}, ...]`` for classifiers
    (a list per face with ``"faces": true``) and a ``PIL.Image`` for text-to-image. A bad request raises
    ``ValueError`` with ``hfvision serve``'s one-line message (the endpoint answers it as a 400).
    """

    def __init__(
        self,
        path: str = "",
        kind: str = "classifier",
        task: str = "image-classification",
        base_model: str | None = None,
        base_revision: str | None = None,
        device: str | None = None,
    ):
        from .config import ServeConfig
        from .tasks import load_runner, make_runner

        path = path or "."
        self.kind, self.task = kind, task
        config = ServeConfig(task=task, model=str(path), onnx=kind == "onnx", device=device or _default_device())
        if kind == "lora":
            from ..models import load_pipeline

            pipe = load_pipeline(base_model, revision=base_revision)
            pipe.load_lora_weights(str(path))
            self.runner = make_runner(config, pipe.to(config.device))
        else:
            self.runner = load_runner(config)
        logger.info("endpoint ready: %s (%s) from %s", task, kind, path)

    def _request(self, inputs: Any, parameters: Any) -> tuple[bytes, str]:
        """The request as ``hfvision serve`` would receive it: (body, content type)."""
        if self.task == "text-to-image":
            return json.dumps({"inputs": inputs, "parameters": parameters}).encode(), "application/json"
        if isinstance(inputs, (bytes, bytearray)):
            data = bytes(inputs)
        elif hasattr(inputs, "save") and hasattr(inputs, "mode"):  # a PIL image: the toolkit decoded the upload
            from PIL import ImageOps

            buffer = io.BytesIO()  # lossless, so the pixels are the upload's; EXIF rotation applied like serve does
            ImageOps.exif_transpose(inputs).save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
        else:  # a JSON value (base64 image): validated by the wire parser
            return json.dumps({"inputs": inputs, "parameters": parameters}).encode(), "application/json"
        if parameters is None:
            return data, "application/octet-stream"
        payload = {"inputs": base64.b64encode(data).decode("ascii"), "parameters": parameters}
        return json.dumps(payload).encode(), "application/json"

    def __call__(self, data: dict) -> Any:
        """Answer one request ``{"inputs": ..., "parameters": ...}`` (Inference Endpoints' handler contract)."""
        from .wire import WireError

        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request must be {"inputs": ..., "parameters": {...}}')
        body, content_type = self._request(data["inputs"], data.get("parameters"))
        try:
            payload, key = self.runner.prepare(body, content_type)
            result = self.runner.run_batch(key, [payload])[0]
        except WireError as err:
            raise ValueError(err.message) from None
        if self.task == "text-to-image":
            image, _seed = result
            return image
        body, _, _ = self.runner.encode(result)  # the JSON serve sends (arrays as lists, numpy scalars as numbers)
        return json.loads(body)
