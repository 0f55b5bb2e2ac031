"""The HTTP server on a real uvicorn (127.0.0.1, free port) with the tiny ViT: results equal the pipeline's, the
error statuses, limits, metrics and graceful shutdown."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")


def test_classification_matches_the_pipeline(vit_pipe, photo_bytes, serve):
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    config = ServeConfig(task="image-classification", model="org/tiny-vit", max_wait_ms=1)
    server = serve(create_app(config, pipe=vit_pipe))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in ("astronaut", "chelsea", "astronaut-png"):
            want = vit_pipe(load_image(photo_bytes[name]))
            for path in ("/", "/models/org/tiny-vit"):
                response = client.post(path, content=photo_bytes[name], headers={"Content-Type": "image/jpeg"})
                assert response.status_code == 200, response.text
                assert response.headers["content-type"] == "application/json"
                assert response.json() == want  # a batch of one: exactly the pipeline's output
        # JSON form with parameters, as InferenceClient sends it when parameters are given
        image = load_image(photo_bytes["coffee"])
        for params in ({"top_k": 1}, {"function_to_apply": "none"}, {"top_k": 2, "function_to_apply": "sigmoid"}):
            body = {"inputs": base64.b64encode(photo_bytes["coffee"]).decode(), "parameters": params}
            response = client.post("/models/org/tiny-vit", json=body)
            assert response.status_code == 200, response.text
            assert response.json() == vit_pipe(image, **params)
        info = client.get("/").json()
        assert info["parameters"] == ["function_to_apply", "top_k"] and info["model"] == "org/tiny-vit"


def test_error_statuses(vit_pipe, photo_bytes, serve):
    from hfvision.serving import ServeConfig, create_app

    config = ServeConfig(task="image-classification", model="tiny", max_body_mb=0.01)  # 10,485 bytes
    server = serve(create_app(config, pipe=vit_pipe))
    small = photo_bytes["astronaut"][: len(photo_bytes["astronaut"]) // 2]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        cases = [
            ("/models/other", photo_bytes["astronaut"], 404, "is not served here; use POST /models/tiny"),
            ("/", b"", 400, "empty request body"),
            ("/", b"GIF89a not really", 400, "bad image: "),
            ("/", small, 400, "bad image: truncated"),
            ("/", b"<svg xmlns='http://www.w3.org/2000/svg'/>", 400, "bad image: not an image"),
            ("/", b'{"inputs": "aGk=", "parameters": {"top_k": -2}}', 400, "top_k=-2 must be >= 1"),
            ("/", photo_bytes["astronaut-png"], 413, "the limit is 10485"),
        ]
        for path, body, status, message in cases:
            response = client.post(path, content=body)
            assert response.status_code == status, (message, response.text)
            error = response.json()["error"]
            assert message in error and "\n" not in error, error

        # chunked upload without Content-Length: refused once the limit is crossed
        def chunks():
            for _ in range(20):
                yield b"\0" * 1024

        response = client.post("/", content=chunks())
        assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
        metrics = client.get("/metrics").text
    assert 'hfvision_requests_total{code="413"} 2.0' in metrics
    assert 'hfvision_request_errors_total{reason="bad_image"} 3.0' in metrics
    assert 'hfvision_requests_total{code="404"} 1.0' in metrics


class GatedRunner:
    """A runner whose model blocks until ``gate`` is set (to fill the queue / time requests out)."""

    accepted: dict = {}
    encode_in_thread = False

    def __init__(self):
        self.gate = threading.Event()
        self.started = threading.Event()

    def prepare(self, body, content_type):
        return body.decode(), None

    def run_batch(self, key, payloads):
        self.started.set()
        self.gate.wait(30)
        return [p.upper() for p in payloads]

    def encode(self, result):
        return result.encode(), "text/plain", {}


def test_queue_full_is_503_with_retry_after_and_timeouts_are_504(serve):
    from hfvision.serving import ServeConfig, create_app

    runner = GatedRunner()
    config = ServeConfig(max_batch_size=1, max_wait_ms=0, max_queue=2, timeout=1.5)
    app = create_app(config, runner=runner)
    server = serve(app)
    with concurrent.futures.ThreadPoolExecutor(4) as pool, httpx.Client(base_url=server.url, timeout=30) as client:
        running = pool.submit(client.post, "/", content=b"first")
        assert runner.started.wait(10)
        queued = [pool.submit(client.post, "/", content=f"q{i}".encode()) for i in range(2)]
        deadline = time.monotonic() + 10
        while app.state.batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = client.post("/", content=b"one too many")
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert "2 requests are queued" in response.json()["error"]
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["queue_depth"] == 2
        for future in queued:  # the model is still blocked: the queued requests time out
            response = future.result()
            assert response.status_code == 504 and "no result within 1.5 s" in response.json()["error"]
        assert app.state.batcher.depth == 0
        runner.gate.set()
        assert running.result().status_code == 504  # it started before the gate opened, but also timed out
        response = client.post("/", content=b"after")
        assert response.status_code == 200 and response.text == "AFTER"


def test_graceful_shutdown_finishes_in_flight_requests(serve):
    from hfvision.serving import ServeConfig, create_app

    runner = GatedRunner()
    app = create_app(ServeConfig(max_batch_size=2, max_wait_ms=0), runner=runner)
    server = serve(app)
    url = server.url
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(httpx.post, url + "/", content=f"r{i}".encode(), timeout=30) for i in range(5)]
        deadline = time.monotonic() + 10
        while app.state.metrics.sample("hfvision_requests_in_flight") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.metrics.sample("hfvision_requests_in_flight") == 5
        stopper = pool.submit(server.stop)  # graceful: waits for the in-flight requests
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # no new connections while draining
            httpx.post(url + "/", content=b"late", timeout=5)
        runner.gate.set()
        assert [f.result().text for f in futures] == [f"R{i}" for i in range(5)]
        stopper.result(timeout=30)
    assert app.state.batcher.closed
