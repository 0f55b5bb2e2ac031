"""What the server does per task: parse a request, run a batch of them, encode a result.

A *runner* has three steps, each on the right thread:

- ``prepare(body, content_type) -> (payload, key)`` on a thread-pool thread: wire parsing, parameter checks,
  image decoding and, for whole-image classification, the pipeline's per-image preprocessing
  (``pipe.prepare``) (bad input raises :class:`~.wire.WireError` before anything is queued); requests with
  equal ``key`` (their parameters) may share a batch;
- ``run_batch(key, payloads) -> results`` on the single batch worker thread: one forward pass for the batch
  (``pipe.run_prepared``), or one pipeline call (face-first mode, feature pyramids);
- ``encode(result) -> (body bytes, media type, headers)``.

>>> runner = load_runner(ServeConfig(task="image-classification", model="timm/resnet18.a1_in1k"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Hashable, Sequence
from typing import Any

from ..data.image_io import ImageLoadError, decode_jpeg, load_image
from ..utils.logging import get_logger
from .config import ServeConfig
from .wire import (
    CLASSIFICATION_PARAMS,
    FEATURE_PARAMS,
    GENDER_PARAMS,
    WireError,
    encode_png,
    json_default,
    parse_image_request,
    parse_text_request,
    text_to_image_params,
)

logger = get_logger(__name__)

JSON = "application/json"
_JSON = json.JSONEncoder(default=json_default)  # one encoder, not one per response


def decode_image(data: bytes, max_pixels: int):
    """Image bytes -> RGB ``PIL.Image``; an unusable image is a 400 with the loader's one-line reason."""
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageLoadError as err:
        raise WireError(400, f"bad image: {err.reason}: {err.detail}", reason="bad_image") from None


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


class ImageRunner:
    """Image classification, gender classification and feature pyramids, one model call per batch.

    Args:
        pipe: a transformers-style image pipeline (``hfvision.pipeline(...)``).
        task (`str`): the served task (selects the accepted parameters).
        max_pixels (`int`): decoded-image pixel limit.
    """

    def __init__(self, pipe: Any, task: str, max_pixels: int = 40_000_000):
        self.pipe, self.task, self.max_pixels = pipe, task, max_pixels
        self.accepted = {
            "gender-classification": GENDER_PARAMS,
            "image-classification": CLASSIFICATION_PARAMS,
            "image-feature-pyramid": FEATURE_PARAMS,
        }[task]
        self.encode_in_thread = task == "image-feature-pyramid"  # feature maps make large JSON bodies

    def _split(self, params: dict) -> bool:
        """Whether the pipeline's per-image half runs here, in the request threads (whole-image classification)."""
        faces = params.get("faces", getattr(self.pipe, "_preprocess_params", {}).get("faces", False))
        return hasattr(self.pipe, "run_prepared") and not faces

    def prepare(self, body: bytes, content_type: str | None) -> tuple[Any, Hashable]:
        data, params = parse_image_request(body, content_type, self.accepted)
        if "out_indices" in params and hasattr(self.pipe, "check_out_indices"):
            try:
                params["out_indices"] = self.pipe.check_out_indices(params["out_indices"])
            except ValueError as err:
                raise WireError(400, f"invalid parameter: {err}") from None
        if self._split(params):
            # decode + resize/crop here, on the request's thread pool: the batch worker is left with one forward
            # pass. JPEGs decode to an array with the GIL released (equal pixels); the rest go through PIL.
            from ..pipelines.image_batching import is_channels_last_rgb  # torch: not at import time

            image = decode_jpeg(data, self.max_pixels)
            if image is None or not is_channels_last_rgb(image):  # 1 or 3 px high: would read as channels-first
                image = decode_image(data, self.max_pixels)
            return self.pipe.prepare(image, **params), _key(params)
        return decode_image(data, self.max_pixels), _key(params)

    def run_batch(self, key: Hashable, payloads: list) -> Sequence[Any]:
        params = dict(key)
        if self._split(params):
            return self.pipe.run_prepared(payloads, **params)
        return self.pipe(payloads, batch_size=len(payloads), **params)

    def encode(self, result: Any) -> tuple[bytes, str, dict]:
        return _JSON.encode(result).encode(), JSON, {}


class TextToImageRunner:
    """Text-to-image on a diffusers pipeline: requests with the same steps/guidance/size run as one batch, each
    with its own seeded generator (so a seeded request gives the same image as running it alone, up to
    floating-point rounding of the batched UNet call)."""

    encode_in_thread = True

    def __init__(self, pipe: Any, max_steps: int = 150, max_side: int = 2048):
        self.pipe = pipe
        self.accepted = text_to_image_params(max_steps, max_side)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    def prepare(self, body: bytes, content_type: str | None) -> tuple[Any, Hashable]:
        prompt, params = parse_text_request(body, content_type, self.accepted)
        seed = params.pop("seed", None)
        if seed is None:
            seed = secrets.randbits(63)
        negative = params.pop("negative_prompt", None)
        return (prompt, negative, seed), _key(params)

    def run_batch(self, key: Hashable, payloads: list) -> Sequence[Any]:
        import torch

        params = dict(key)
        prompts = [p for p, _, _ in payloads]
        negatives = [n or "" for _, n, _ in payloads]
        device = getattr(self.pipe, "device", "cpu")
        generators = [torch.Generator(device=device).manual_seed(seed) for _, _, seed in payloads]
        output = self.pipe(
            prompt=prompts,
            negative_prompt=negatives if any(negatives) else None,
            generator=generators,
            output_type="pil",
            **params,
        )
        return [(image, seed) for image, (_, _, seed) in zip(output.images, payloads)]

    def encode(self, result: Any) -> tuple[bytes, str, dict]:
        image, seed = result
        return encode_png(image), "image/png", {"X-Seed": str(seed)}


def load_pipeline_for(config: ServeConfig) -> Any:
    """Load the model ``config`` describes (classification through ``hfvision.pipeline``, text-to-image through
    ``hfvision.models.load_pipeline``)."""
    if config.task == "text-to-image":
        if config.model is None:
            raise ValueError(
                "text-to-image needs --model (a registry key like sd15, a folder, a .safetensors file or URL)"
            )
        if config.onnx:
            from ..export.loading import load_ort_pipeline

            return load_ort_pipeline("text-to-image", config.model)
        from ..models import load_pipeline

        return load_pipeline(config.model).to(config.device)
    from ..pipelines.factory import pipeline

    backend = "onnx" if config.onnx else "auto"
    return pipeline(config.task, model=config.model, device=config.device, backend=backend)


def make_runner(config: ServeConfig, pipe: Any):
    """The runner serving ``pipe`` for ``config.task``."""
    if config.task == "text-to-image":
        return TextToImageRunner(pipe, config.max_steps, config.max_side)
    return ImageRunner(pipe, config.task, config.max_pixels)


def load_runner(config: ServeConfig):
    """Load ``config.model`` and wrap it in the runner for ``config.task``."""
    return make_runner(config, load_pipeline_for(config))
