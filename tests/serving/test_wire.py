"""Wire format parsing (HF Inference API) and the Prometheus text exposition; no model, no server."""

from __future__ import annotations

import base64
import json

import pytest

from hfvision.serving.metrics import ServerMetrics
from hfvision.serving.wire import (
    CLASSIFICATION_PARAMS,
    GENDER_PARAMS,
    WireError,
    decode_base64_image,
    parse_image_request,
    parse_text_request,
    text_to_image_params,
)


def test_raw_bytes_and_json_forms_give_the_same_image():
    data = b"\x89PNG\r\n\x1a\n fake image bytes"
    assert parse_image_request(data, "image/png", CLASSIFICATION_PARAMS) == (data, {})
    assert parse_image_request(data, None, CLASSIFICATION_PARAMS) == (data, {})
    body = json.dumps({"inputs": base64.b64encode(data).decode(), "parameters": {"top_k": 1}}).encode()
    assert parse_image_request(body, "application/json", CLASSIFICATION_PARAMS) == (data, {"top_k": 1})
    # no content type: a JSON object is recognised by its first byte (what curl -d sends)
    assert parse_image_request(body, "application/x-www-form-urlencoded", CLASSIFICATION_PARAMS)[0] == data


@pytest.mark.parametrize(
    "value",
    [
        lambda d: base64.b64encode(d).decode(),
        lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
        lambda d: "data:image/png;base64," + base64.b64encode(d).decode(),
        lambda d: "\n".join(base64.encodebytes(d).decode().split()),
    ],
    ids=["standard", "urlsafe-unpadded", "data-url", "wrapped-lines"],
)
def test_base64_variants(value):
    data = bytes(range(256)) * 3
    assert decode_base64_image(value(data)) == data


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "empty request body"),
        (b'{"inputs": ', "malformed JSON"),
        (b'{"image": "aGk="}', 'must be an object with "inputs"'),
        (b'{"inputs": 3}', "base64 string"),
        (b'{"inputs": "not base64 !!"}', "not valid base64"),
        (b'{"inputs": "https://example.com/cat.jpg"}', "does not fetch URLs"),
        (b'{"inputs": "aGk=", "parameters": [1]}', "must be a JSON object"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": 0}}', "top_k=0 must be >= 1"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": "3"}}', "must be an integer"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": true}}', "top_k=True must be an integer"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": 2.5}}', "top_k=2.5 must be an integer"),
        (b'{"inputs": "aGk=", "parameters": {"function_to_apply": "relu"}}', "sigmoid, softmax or none"),
        (b'{"inputs": "aGk=", "parameters": {"threshold": 0.5}}', "unsupported parameter(s) threshold"),
        (b'{"inputs": "aGk=", "parameters": {"faces": true}}', "unsupported parameter(s) faces"),
    ],
)
def test_bad_image_requests_are_400_with_one_line_reason(body, message):
    with pytest.raises(WireError) as info:
        parse_image_request(body, "application/json" if body else None, CLASSIFICATION_PARAMS)
    assert info.value.status == 400
    assert message in info.value.message and "\n" not in info.value.message


def test_parameters_given_as_null_are_ignored_and_faces_only_for_gender():
    body = b'{"inputs": "aGk=", "parameters": {"top_k": null, "function_to_apply": null}}'
    assert parse_image_request(body, "application/json", CLASSIFICATION_PARAMS) == (b"hi", {})
    body = b'{"inputs": "aGk=", "parameters": {"faces": true, "top_k": 2.0}}'
    assert parse_image_request(body, "application/json", GENDER_PARAMS) == (b"hi", {"faces": True, "top_k": 2})


def test_text_to_image_parameters():
    accepted = text_to_image_params(max_steps=10, max_side=256)
    params = {
        "negative_prompt": "blurry",
        "num_inference_steps": 2,
        "guidance_scale": 5,
        "width": 64,
        "height": 128,
        "seed": 3,
    }
    body = json.dumps({"inputs": "a photo of sks dog", "parameters": params}).encode()
    prompt, got = parse_text_request(body, "application/json", accepted)
    assert prompt == "a photo of sks dog" and got == {**params, "guidance_scale": 5.0}
    for bad, message in [
        ({"width": 100}, "multiple of 8; try 96 or 104"),
        ({"width": 12}, "multiple of 8; try 8 or 16"),
        ({"width": 4}, "width=4 must be >= 8"),
        ({"negative_prompt": 3}, "must be a string"),
        ({"negative_prompt": "x" * 10_001}, "has more than 10000 characters"),
        ({"seed": 1e20}, "seed=1e+20 is out of range"),
        ({"height": 512}, "height=512 must be <= 256"),
        ({"num_inference_steps": 11}, "<= 10"),
        ({"guidance_scale": float("nan")}, "finite number"),
        ({"seed": -1}, ">= 0"),
        ({"scheduler": "ddim"}, "unsupported parameter(s) scheduler"),
    ]:
        body = json.dumps({"inputs": "x", "parameters": bad}).encode()
        with pytest.raises(WireError, match=None) as info:
            parse_text_request(body, "application/json", accepted)
        assert message in info.value.message and len(info.value.message) < 200, info.value.message
    with pytest.raises(WireError) as info:
        parse_text_request(b"raw bytes", "application/octet-stream", accepted)
    assert info.value.status == 415
    with pytest.raises(WireError, match="non-empty prompt"):
        parse_text_request(b'{"inputs": "  "}', "application/json", accepted)


def _parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}, checking every sample line has a HELP and TYPE."""
    samples, typed = {}, set()
    for line in text.strip().splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            base = name_labels.split("{")[0]
            assert any(base == t or base.startswith(t + "_") for t in typed), line
            samples[name_labels] = float(value)
    return samples


def test_metrics_exposition_format():
    metrics = ServerMetrics()
    metrics.requests.labels(code="200").inc()
    metrics.requests.labels(code="200").inc()
    metrics.errors.labels(reason='bad "image"\n').inc()
    for size in (1, 3, 3, 32, 40):
        metrics.batch_size.observe(size)
    metrics.latency.observe(0.003)
    metrics.queue_depth.set(7)
    samples = _parse_exposition(metrics.render())
    assert samples['hfvision_requests_total{code="200"}'] == 2
    assert samples['hfvision_request_errors_total{reason="bad \\"image\\"\\n"}'] == 1
    # cumulative buckets: le=1 -> 1, le=4 -> 3, le=32 -> 4, le=64 -> 5, +Inf -> 5
    assert samples['hfvision_batch_size_bucket{le="1.0"}'] == 1
    assert samples['hfvision_batch_size_bucket{le="2.0"}'] == 1
    assert samples['hfvision_batch_size_bucket{le="4.0"}'] == 3
    assert samples['hfvision_batch_size_bucket{le="32.0"}'] == 4
    assert samples['hfvision_batch_size_bucket{le="64.0"}'] == 5
    assert samples['hfvision_batch_size_bucket{le="+Inf"}'] == 5
    assert samples["hfvision_batch_size_sum"] == 79 and samples["hfvision_batch_size_count"] == 5
    assert samples['hfvision_request_latency_seconds_bucket{le="0.0025"}'] == 0
    assert samples['hfvision_request_latency_seconds_bucket{le="0.005"}'] == 1
    assert samples["hfvision_queue_depth"] == 7
    assert metrics.sample("hfvision_requests_total", code="200") == 2
    assert metrics.sample("hfvision_requests_total", code="500") == 0  # never recorded


def test_feature_parameters_take_one_level_or_a_list():
    from hfvision.serving.wire import FEATURE_PARAMS

    def parse(params):
        body = json.dumps({"inputs": "aGk=", "parameters": params}).encode()
        return parse_image_request(body, "application/json", FEATURE_PARAMS)[1]

    assert parse({"out_indices": 2}) == {"out_indices": (2,)}
    assert parse({"out_indices": [1, -1]}) == {"out_indices": (1, -1)}
    for bad, message in [([], "must not be empty"), ([True], "must be an integer"), ("x", "non-empty list")]:
        with pytest.raises(WireError, match=message):
            parse({"out_indices": bad})
