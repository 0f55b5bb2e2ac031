"""The Hugging Face Inference API wire format: request parsing and validation, response encoding.

Requests, as ``huggingface_hub.InferenceClient`` sends them:

- image tasks: the raw image bytes as the body, or JSON ``{"inputs": "<base64 image>", "parameters": {...}}``
  (the client switches to JSON when parameters are given);
- text-to-image: JSON ``{"inputs": "<prompt>", "parameters": {"negative_prompt", "num_inference_steps",
  "guidance_scale", "width", "height", "seed"}}``.

Every problem raises :class:`WireError` with the HTTP status and a one-line reason; the server answers
``{"error": reason}`` like the hosted API does.

>>> parse_image_request(b'{"inputs": "aGk=", "parameters": {"top_k": 2}}', "application/json", CLASSIFICATION_PARAMS)
(b'hi', {'top_k': 2})
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class WireError(Exception):
    """A request the server refuses: ``status`` is the HTTP code, ``message`` a one-line reason."""

    def __init__(self, status: int, message: str, reason: str = "bad_request", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}


@dataclass(frozen=True)
class Param:
    """One accepted request parameter: ``check(value) -> normalised value`` raises ``ValueError`` with the fix."""

    name: str
    check: Callable[[Any], Any]
    help: str = ""


def _int(name: str, low: int | None = None, high: int | None = None, multiple: int | None = None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"{name}={value!r} must be an integer")
        if low is not None and value < low:
            raise ValueError(f"{name}={value} must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"{name}={value} must be <= {high}")
        if multiple and value % multiple:
            lower = value - value % multiple
            raise ValueError(
                f"{name}={value} must be a multiple of {multiple}; try {lower or multiple} or {lower + multiple}"
            )
        return value

    return check


def _float(name: str, low: float | None = None, high: float | None = None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number")
        if low is not None and value < low:
            raise ValueError(f"{name}={value} must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"{name}={value} must be <= {high}")
        return float(value)

    return check


def _choice(name: str, choices: tuple[str, ...]):
    def check(value):
        if value not in choices:
            raise ValueError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    return check


def _bool(name: str):
    def check(value):
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be true or false")
        return value

    return check


def _text(name: str, max_chars: int = 10_000):
    def check(value):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise ValueError(f"{name} has {len(value)} characters; the limit is {max_chars}")
        return value

    return check


def _int_list(name: str):
    def check(value):
        values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if (
            not isinstance(values, list)
            or not values
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
        ):
            raise ValueError(f"{name}={value!r} must be an integer or a non-empty list of integers")
        return tuple(values)

    return check


def params(*items: Param) -> dict[str, Param]:
    return {p.name: p for p in items}


CLASSIFICATION_PARAMS = params(
    Param("top_k", _int("top_k", low=1), "number of labels to return (default: all up to 5)"),
    Param("function_to_apply", _choice("function_to_apply", ("sigmoid", "softmax", "none")), "score function"),
)
#: gender-classification also takes ``faces`` (hfvision extension: classify each detected face)
GENDER_PARAMS = {**CLASSIFICATION_PARAMS, **params(Param("faces", _bool("faces"), "face-first classification"))}
FEATURE_PARAMS = params(Param("out_indices", _int_list("out_indices"), "feature levels to return"))


def text_to_image_params(max_steps: int = 150, max_side: int = 2048) -> dict[str, Param]:
    """Accepted text-to-image parameters, with the server's limits on steps and image size."""
    return params(
        Param("negative_prompt", _text("negative_prompt"), "what to avoid"),
        Param("num_inference_steps", _int("num_inference_steps", 1, max_steps), "denoising steps"),
        Param("guidance_scale", _float("guidance_scale", 0.0, 100.0), "classifier-free guidance weight"),
        Param("width", _int("width", 8, max_side, multiple=8), "image width in pixels"),
        Param("height", _int("height", 8, max_side, multiple=8), "image height in pixels"),
        Param("seed", _int("seed", 0, 2**63 - 1), "random seed"),
    )


def check_parameters(raw: Any, accepted: Mapping[str, Param]) -> dict[str, Any]:
    """Validate ``raw`` (the JSON ``parameters`` object) against ``accepted``; ``None`` values mean "not given"."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WireError(400, f"'parameters' must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(k for k, v in raw.items() if k not in accepted and v is not None)
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise WireError(400, f"unsupported parameter(s) {', '.join(unknown)}; this task accepts: {allowed}")
    out = {}
    for name, value in raw.items():
        if value is None:
            continue
        try:
            out[name] = accepted[name].check(value)
        except ValueError as err:
            raise WireError(400, f"invalid parameter: {err}") from None
    return out


def is_json(body: bytes, content_type: str | None) -> bool:
    """Whether the body is a JSON request (by content type, or by its first byte when the type is generic)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return True
    if media.startswith("image/"):
        return False
    return body.lstrip()[:1] == b"{"


def load_json(body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(400, f"malformed JSON body: {err}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise WireError(400, 'a JSON body must be an object with "inputs" (and optionally "parameters")')
    return payload


def decode_base64_image(value: Any) -> bytes:
    """``inputs`` of a JSON image request: base64 (standard or URL-safe, optionally a ``data:`` URL) -> bytes."""
    if not isinstance(value, str) or not value:
        raise WireError(400, '"inputs" must be the image as a base64 string')
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise WireError(400, "data: URLs must be base64-encoded (data:image/png;base64,...)")
    if value.startswith(("http://", "https://")):
        raise WireError(400, '"inputs" is a URL; this server does not fetch URLs, send the image bytes instead')
    text = "".join(value.split())
    text += "=" * (-len(text) % 4)
    try:
        altchars = b"-_" if ("-" in text or "_" in text) else None
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(400, '"inputs" is not valid base64') from None


def parse_image_request(body: bytes, content_type: str | None, accepted: Mapping[str, Param]) -> tuple[bytes, dict]:
    """An image request -> (image bytes, validated parameters)."""
    if not body:
        raise WireError(400, 'empty request body; send image bytes or JSON {"inputs": <base64 image>}')
    if not is_json(body, content_type):
        return body, {}
    payload = load_json(body)
    return decode_base64_image(payload["inputs"]), check_parameters(payload.get("parameters"), accepted)


def parse_text_request(body: bytes, content_type: str | None, accepted: Mapping[str, Param]) -> tuple[str, dict]:
    """A text-to-image request -> (prompt, validated parameters)."""
    if not body:
        raise WireError(400, 'empty request body; send JSON {"inputs": "<prompt>", "parameters": {...}}')
    if not is_json(body, content_type):
        raise WireError(415, 'text-to-image takes JSON {"inputs": "<prompt>", "parameters": {...}}', "unsupported")
    payload = load_json(body)
    prompt = payload["inputs"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise WireError(400, '"inputs" must be a non-empty prompt string')
    try:
        prompt = _text("inputs")(prompt)
    except ValueError as err:
        raise WireError(400, str(err)) from None
    return prompt, check_parameters(payload.get("parameters"), accepted)


def encode_png(image) -> bytes:
    """A ``PIL.Image`` as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy/torch arrays become nested lists, numpy scalars Python numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
