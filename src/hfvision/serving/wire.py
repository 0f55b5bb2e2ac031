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
import reprlib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    create_model,
    field_validator,
)

MAX_PROMPT_CHARS = 10_000


class WireError(Exception):
    """A request the server refuses: ``status`` is the HTTP code, ``message`` a one-line reason."""

    def __init__(self, status: int, message: str, reason: str = "bad_request", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}


def _json_number(kind: str):
    # pydantic's lax mode would take JSON true/false as 1/0 and "3" as 3 for a number field
    def check(value: Any) -> Any:
        if isinstance(value, (bool, str)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"must be {kind}")
        return value

    return BeforeValidator(check)


def _multiple_of(multiple: int):
    def check(value: int) -> int:
        if value % multiple:
            lower = value - value % multiple
            options = " or ".join(str(v) for v in dict.fromkeys(v for v in (lower, lower + multiple) if v > 0))
            raise ValueError(f"must be a multiple of {multiple}; try {options}")
        return value

    return AfterValidator(check)


_INT = Annotated[int, _json_number("an integer")]  # 2.0 is taken as 2; "2", true and 2.5 are refused


class Parameters(BaseModel):
    """Base of the accepted ``parameters`` of a task: unknown names are refused; ``None`` means "not given"."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassificationParameters(Parameters):
    top_k: Annotated[_INT, Field(ge=1, description="number of labels to return (default: all up to 5)")] | None = None
    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(None, description="score function")


class GenderParameters(ClassificationParameters):
    """gender-classification also takes ``faces`` (hfvision extension: classify each detected face)."""

    faces: StrictBool | None = Field(None, description="face-first classification")


class FeatureParameters(Parameters):
    out_indices: Annotated[tuple[Annotated[int, Field(strict=True)], ...], Field(min_length=1)] | None = Field(
        None, description="feature levels to return"
    )

    @field_validator("out_indices", mode="before")
    @classmethod
    def _one_or_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


CLASSIFICATION_PARAMS = ClassificationParameters
GENDER_PARAMS = GenderParameters
FEATURE_PARAMS = FeatureParameters


def text_to_image_params(max_steps: int = 150, max_side: int = 2048) -> type[Parameters]:
    """Accepted text-to-image parameters, with the server's limits on steps and image size."""
    side = Annotated[_INT, Field(ge=8, le=max_side), _multiple_of(8)]
    return create_model(
        "TextToImageParameters",
        __base__=Parameters,
        negative_prompt=(Annotated[str, Field(strict=True, max_length=10_000)] | None, None),
        num_inference_steps=(Annotated[_INT, Field(ge=1, le=max_steps)] | None, None),
        guidance_scale=(Annotated[float, _json_number("a finite number"), Field(ge=0.0, le=100.0)] | None, None),
        width=(side | None, None),
        height=(side | None, None),
        seed=(Annotated[_INT, Field(ge=0, le=2**63 - 1)] | None, None),
    )


_INPUT_REPR = reprlib.Repr()  # a 10,000-character value is not echoed back in full
_INPUT_REPR.maxstring = _INPUT_REPR.maxother = 40

# pydantic error type -> the one-line reason shown to the client (ctx holds the limit)
_REASONS = {
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a finite number",
    "float_parsing": "must be a finite number",
    "finite_number": "must be a finite number",
    "literal_error": "must be one of {expected}",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_too_long": "has more than {max_length} characters",
    "int_parsing_size": "is out of range",
    "too_short": "must not be empty",
    "tuple_type": "must be an integer or a non-empty list of integers",
}


def _reason(error: dict) -> str:
    name = ".".join(str(part) for part in error["loc"][:1]) or "parameters"
    template = _REASONS.get(error["type"])
    if template is None:  # our own validators (ValueError) and anything unmapped
        reason = error["msg"].removeprefix("Value error, ")
    else:
        reason = template.format(**{k: str(v).replace("'", "") for k, v in error.get("ctx", {}).items()})
    return f"invalid parameter: {name}={_INPUT_REPR.repr(error['input'])} {reason}"


def _first_error(err: ValidationError, accepted: type[Parameters]) -> str:
    errors = err.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        allowed = ", ".join(sorted(accepted.model_fields)) or "none"
        return f"unsupported parameter(s) {', '.join(unknown)}; this task accepts: {allowed}"
    return _reason(errors[0])


def check_parameters(raw: Any, accepted: type[Parameters]) -> dict[str, Any]:
    """Validate ``raw`` (the JSON ``parameters`` object) against ``accepted``; ``None`` values mean "not given"."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WireError(400, f"'parameters' must be a JSON object, got {type(raw).__name__}")
    try:
        return accepted.model_validate({k: v for k, v in raw.items() if v is not None}).model_dump(exclude_none=True)
    except ValidationError as err:
        raise WireError(400, _first_error(err, accepted)) from None


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


def parse_image_request(body: bytes, content_type: str | None, accepted: type[Parameters]) -> tuple[bytes, dict]:
    """An image request -> (image bytes, validated parameters)."""
    if not body:
        raise WireError(400, 'empty request body; send image bytes or JSON {"inputs": <base64 image>}')
    if not is_json(body, content_type):
        return body, {}
    payload = load_json(body)
    return decode_base64_image(payload["inputs"]), check_parameters(payload.get("parameters"), accepted)


def parse_text_request(body: bytes, content_type: str | None, accepted: type[Parameters]) -> tuple[str, dict]:
    """A text-to-image request -> (prompt, validated parameters)."""
    if not body:
        raise WireError(400, 'empty request body; send JSON {"inputs": "<prompt>", "parameters": {...}}')
    if not is_json(body, content_type):
        raise WireError(415, 'text-to-image takes JSON {"inputs": "<prompt>", "parameters": {...}}', "unsupported")
    payload = load_json(body)
    prompt = payload["inputs"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise WireError(400, '"inputs" must be a non-empty prompt string')
    if len(prompt) > MAX_PROMPT_CHARS:
        raise WireError(400, f"inputs has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
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
