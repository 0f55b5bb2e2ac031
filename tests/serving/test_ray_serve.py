"""``hfvision serve --backend ray``: the request -> response mapping equals ``hfvision serve``'s (fast, no Ray), and a
real local Ray Serve instance (2 CPUs) passes the 32-client load test with answers equal to single requests (slow)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")


def _requests(photo_bytes):
    """(path, body, content type) cases covering success, parameters and each error code serve answers."""
    jpeg = photo_bytes["astronaut"]
    b64 = base64.b64encode(photo_bytes["chelsea"]).decode()
    return [
        ("/", jpeg, "image/jpeg"),
        ("/models/vit", json.dumps({"inputs": b64, "parameters": {"top_k": 1}}).encode(), "application/json"),
        ("/", photo_bytes["astronaut-png"], "image/png"),
        ("/", b"", "image/jpeg"),  # 400 empty body
        ("/", b'{"inputs": "@@@"}', "application/json"),  # 400 bad base64
        ("/", json.dumps({"inputs": b64, "parameters": {"top_k": 0}}).encode(), "application/json"),  # 400
        ("/", b"not an image at all", "image/jpeg"),  # 400 bad image
        ("/", b"x" * 600_000, "image/jpeg"),  # 413 over max_body_mb
        ("/models/other", jpeg, "image/jpeg"),  # 404 unknown model
    ]


def _config():
    from hfvision.serving import ServeConfig

    return ServeConfig(task="image-classification", model="vit", max_body_mb=0.5, num_threads=1)


def _serve_answers(app, cases):
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        return [_answer(client.post(path, content=body, headers={"content-type": ct})) for path, body, ct in cases]


def _answer(response):
    return response.status_code, response.headers["content-type"], response.content


def test_http_front_answers_like_hfvision_serve(vit_pipe, photo_bytes):
    """HttpFront (what each Ray replica runs, here with an unbatched infer) vs the uvicorn app, byte for byte."""
    from starlette.requests import Request

    from hfvision.serving import create_app
    from hfvision.serving.ray_serve import HttpFront, run_grouped
    from hfvision.serving.tasks import make_runner

    config = _config()
    runner = make_runner(config, vit_pipe)

    async def infer(key, payload):
        (result,) = await run_grouped(runner.run_batch, [(key, payload)])
        if isinstance(result, BaseException):
            raise result
        return result

    front = HttpFront(config, runner, infer)

    async def call(path, body, content_type, method="POST"):
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }
        chunks = [
            {"type": "http.request", "body": body[:1000], "more_body": True},
            {"type": "http.request", "body": body[1000:], "more_body": False},
        ]

        async def receive():
            return chunks.pop(0)

        response = await front(Request(scope, receive))
        return response.status_code, response.headers["content-type"], response.body

    cases = _requests(photo_bytes)
    got = [asyncio.run(call(*case)) for case in cases]
    want = _serve_answers(create_app(config, pipe=vit_pipe), cases)
    assert [g[0] for g in got] == [200, 200, 200, 400, 400, 400, 400, 413, 404]
    assert got == want
    status, _, body = asyncio.run(call("/models/vit", b"", "text/plain", method="GET"))
    assert status == 405 and b"use POST" in body
    assert json.loads(asyncio.run(call("/health", b"", "text/plain", method="GET"))[2])["status"] == "ok"


def test_run_grouped_one_call_per_parameter_set_and_errors_stay_in_their_group():
    from hfvision.serving.ray_serve import run_grouped

    calls = []

    def run_batch(key, payloads):
        calls.append((key, payloads))
        if key == "bad":
            raise RuntimeError("boom")
        return [f"{key}:{p}" for p in payloads]

    items = [("a", 1), ("b", 2), ("a", 3), ("bad", 4)]
    results = asyncio.run(run_grouped(run_batch, items))
    assert results[:3] == ["a:1", "b:2", "a:3"] and isinstance(results[3], RuntimeError)
    assert calls == [("a", [1, 3]), ("b", [2]), ("bad", [4])]


def test_ray_options_validation():
    from hfvision.serving.ray_serve import RayServeOptions

    assert RayServeOptions(min_replicas=1, max_replicas=3).autoscaling_config(16) == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 32,
    }
    with pytest.raises(ValueError, match="--replicas is a fixed count; drop it or drop --min-replicas/--max-replicas"):
        RayServeOptions(replicas=2, max_replicas=3)
    with pytest.raises(ValueError, match="--min-replicas 3 is above --max-replicas 2"):
        RayServeOptions(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="--replicas 0 must be >= 1"):
        RayServeOptions(replicas=0)


def test_cli_ray_flags_are_checked_before_anything_loads(capsys):
    from hfvision.cli.main import main

    assert main(["serve", "--model", "nowhere", "--replicas", "2"]) == 1
    assert "--replicas is a Ray Serve option; add --backend ray" in capsys.readouterr().err
    args = ["serve", "--model", "nowhere", "--backend", "ray", "--replicas", "2", "--max-replicas", "3"]
    assert main(args) == 1 and "--replicas is a fixed count" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_serve_load_test_and_errors(tiny_model_dir, photo_bytes, vit_pipe, assert_same_labels, tmp_path):
    """A local Ray instance (2 CPUs, one replica): 32 clients x 256 requests, 0 errors, answers equal to single
    requests; the error cases answer exactly like hfvision serve."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    import dataclasses

    import httpx
    import ray

    from hfvision.data import load_image
    from hfvision.serving import create_app
    from hfvision.serving.loadgen import run_load
    from hfvision.serving.ray_serve import RayServeOptions, start_ray, stop_ray

    model = str(tiny_model_dir("vit"))
    config = dataclasses.replace(_config(), model=model, name="vit", port=_free_port(), max_wait_ms=5)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        start_ray(config, RayServeOptions(replicas=1))
        url = f"http://127.0.0.1:{config.port}"
        names = sorted(n for n in photo_bytes if n != "astronaut-png")
        payloads = [photo_bytes[n] for n in names]
        expected = [vit_pipe(load_image(data), top_k=2) for data in payloads]
        result = asyncio.run(run_load(url + "/models/vit", payloads, 32, requests=256, keep_responses=True))
        assert result.errors == 0 and result.statuses[200] == 256, result.statuses
        for i, (_, body) in result.responses.items():
            assert_same_labels(json.loads(body), expected[i % len(payloads)])
        cases = _requests(photo_bytes)
        with httpx.Client(base_url=url, timeout=60) as client:
            got = [_answer(client.post(p, content=b, headers={"content-type": ct})) for p, b, ct in cases]
        want = _serve_answers(create_app(config, pipe=vit_pipe), cases)
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert [g[2] for g in got[3:]] == [w[2] for w in want[3:]]  # the same one-line errors
        for g, w in zip(got[:3], want[:3]):
            assert_same_labels(json.loads(g[2]), json.loads(w[2]))
        print(f"ray serve: {result.throughput:.0f} req/s, p99 {result.percentile(99):.1f} ms")
    finally:
        stop_ray()
        ray.shutdown()
