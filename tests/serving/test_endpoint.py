"""The inference routes on raw ASGI (serving.endpoint): clients gone before their body arrived (499 in the metrics),
unknown model names, what falls through to FastAPI, the JPEG fast path against the pipeline, and the MicroBatcher's
one loop wake-up per batch."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")

from hfvision.serving.wire import Parameters  # noqa: E402


class EchoRunner:
    """A runner that upper-cases the body; counts the requests that reached prepare()."""

    accepted = Parameters  # takes no parameters
    encode_in_thread = False

    def __init__(self):
        self.prepared = 0

    def prepare(self, body, content_type):
        self.prepared += 1
        return body.decode(), None

    def run_batch(self, key, payloads):
        return [p.upper() for p in payloads]

    def encode(self, result):
        return result.encode(), "text/plain", {}


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def send_partial_request(port: int, body: bytes, declared: int = 1000, path: str = "/") -> None:
    """Headers announcing ``declared`` bytes, then only ``body``, then the connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        time.sleep(0.05)  # let the server start reading the body


@pytest.fixture
def echo_app():
    from hfvision.serving import ServeConfig, create_app

    runner = EchoRunner()
    app = create_app(ServeConfig(model="tiny", max_wait_ms=1), runner=runner)
    return app, runner


# -- (i) a client gone before its body arrived -----------------------------------------------------------------------
@pytest.mark.parametrize("sent", [b"", b"x" * 100, b"x" * 999], ids=["no-body", "100-of-1000", "999-of-1000"])
def test_client_gone_mid_body_is_499_and_the_server_keeps_serving(echo_app, serve, sent):
    app, runner = echo_app
    metrics = app.state.metrics
    server = serve(app)
    send_partial_request(server.port, sent)
    assert wait_for(lambda: metrics.sample("hfvision_requests_total", code="499") == 1), metrics.render()
    assert metrics.sample("hfvision_request_errors_total", reason="client_disconnected") == 1
    assert wait_for(lambda: metrics.sample("hfvision_requests_in_flight") == 0)
    assert runner.prepared == 0  # never decoded, never queued
    assert app.state.batcher.depth == 0 and app.state.batcher._incoming == 0  # expect() withdrawn
    # nothing counted as a model error, and the next request is served normally
    response = httpx.post(server.url + "/models/tiny", content=b"after", timeout=30)
    assert response.status_code == 200 and response.text == "AFTER"
    assert (
        metrics.sample("hfvision_requests_total", code="200") == 1
        and metrics.sample("hfvision_requests_total", code="500") == 0
    )
    assert metrics.sample("hfvision_request_errors_total", reason="model_error") == 0
    assert metrics.sample("hfvision_requests_total", code="499") == 1
    text = httpx.get(server.url + "/metrics", timeout=30).text
    assert 'hfvision_requests_total{code="499"} 1.0' in text
    assert 'hfvision_request_errors_total{reason="client_disconnected"} 1.0' in text


def test_several_clients_gone_then_concurrent_requests(echo_app, serve):
    app, _ = echo_app
    metrics = app.state.metrics
    server = serve(app)
    for i in range(3):
        send_partial_request(server.port, b"y" * (10 * i), path="/models/tiny" if i % 2 else "/")
    assert wait_for(lambda: metrics.sample("hfvision_requests_total", code="499") == 3), metrics.render()
    assert metrics.sample("hfvision_request_errors_total", reason="client_disconnected") == 3
    with httpx.Client(base_url=server.url, timeout=30) as client:
        threads = [threading.Thread(target=lambda i=i: client.post("/", content=f"r{i}".encode())) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert (
        metrics.sample("hfvision_requests_total", code="200") == 4
        and metrics.sample("hfvision_requests_total", code="499") == 3
    )


# -- (ii) unknown model names; (iii) what falls through to FastAPI ----------------------------------------------------
def test_unknown_model_is_404_json_naming_it(echo_app, serve):
    app, runner = echo_app
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in ("other", "org/other", "tiny/", ""):
            response = client.post(f"/models/{name}", content=b"hello")
            assert response.status_code == 404, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"error": f"model {name!r} is not served here; use POST /models/tiny or POST /"}
        assert client.post("/models/tiny", content=b"ok").text == "OK"
        assert client.post("/models/tiny?top=1", content=b"query").text == "QUERY"  # the query string is not the path
    metrics = app.state.metrics
    assert (
        metrics.sample("hfvision_requests_total", code="404") == 4
        and metrics.sample("hfvision_request_errors_total", reason="unknown_model") == 4
    )
    assert runner.prepared == 2


def test_other_methods_and_routes_fall_through_to_fastapi(echo_app, serve):
    app, runner = echo_app
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        info = client.get("/")
        assert info.status_code == 200 and info.json()["inference"] == ["POST /models/tiny", "POST /"]
        assert client.get("/health").json()["status"] == "ok"
        assert client.put("/", content=b"x").status_code == 405
        assert client.post("/health", content=b"x").status_code == 405
        assert client.post("/metrics", content=b"x").status_code == 405
        assert client.post("/nothing-here", content=b"x").status_code == 404
        assert client.post("/modelsx", content=b"x").status_code == 404
    metrics = app.state.metrics
    assert (
        metrics.sample("hfvision_requests_total", code="405") == 0
        and metrics.sample("hfvision_requests_total", code="404") == 0
    )  # not inference
    assert runner.prepared == 0


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_on_the_model_route_is_405(echo_app, serve, method):
    app, _ = echo_app
    server = serve(app)
    response = httpx.request(method, server.url + "/models/tiny", timeout=30)
    assert response.status_code == 405, response.text
    assert response.headers.get("allow") == "POST"


# -- (iv) the JPEG fast path through the server equals the pipeline on load_image's image --------------------------------
def _jpeg(image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def test_jpeg_variants_equal_the_pipeline(vit_pipe, serve):
    """EXIF-rotated, grayscale, progressive and 4:4:4 JPEGs go through decode_jpeg; CMYK falls back to PIL."""
    from PIL import Image

    from hfvision.data import load_image
    from hfvision.data.image_io import decode_jpeg
    from hfvision.serving import ServeConfig, create_app
    from hfvision.testing import sample_image

    photo = sample_image("chelsea").resize((113, 75))
    exif = Image.Exif()
    exif[0x0112] = 6
    bodies = {
        "exif-6": _jpeg(photo, exif=exif),
        "grey": _jpeg(photo.convert("L")),
        "progressive": _jpeg(photo, progressive=True),
        "444": _jpeg(photo, subsampling=0, quality=95),
        "cmyk": _jpeg(photo.convert("CMYK")),
    }
    assert decode_jpeg(bodies["cmyk"]) is None and all(
        decode_jpeg(b) is not None for k, b in bodies.items() if k != "cmyk"
    )
    config = ServeConfig(task="image-classification", model="vit", max_wait_ms=1)
    server = serve(create_app(config, pipe=vit_pipe))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, body in bodies.items():
            response = client.post("/models/vit", content=body, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, (name, response.text)
            assert response.json() == vit_pipe(load_image(body)), name  # a batch of one: exactly equal


@pytest.mark.parametrize("size", [(40, 1), (40, 3)], ids=["40x1", "40x3"])
def test_thin_jpeg_equals_the_pipeline(vit_pipe, serve, size):
    """1 or 3 px high: an (H, W, 3) array would read as channels-first, so the server decodes these with PIL."""
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app
    from hfvision.testing import sample_image

    body = _jpeg(sample_image("coffee").resize(size))
    want = vit_pipe(load_image(body))
    server = serve(create_app(ServeConfig(task="image-classification", model="vit", max_wait_ms=1), pipe=vit_pipe))
    response = httpx.post(server.url + "/", content=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == want


# -- (v) MicroBatcher: one call_soon_threadsafe per event loop and batch ----------------------------------------------
def _spy_call_soon_threadsafe(loop, calls: list):
    original = loop.call_soon_threadsafe

    def spy(callback, *args, **kwargs):
        calls.append(getattr(callback, "__name__", repr(callback)))
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = spy


def test_a_full_batch_resolves_with_one_loop_wake_up():
    from hfvision.serving.batching import MicroBatcher
    from hfvision.serving.metrics import ServerMetrics

    seen = []

    def model(key, payloads):
        seen.append(list(payloads))
        return [p * 10 for p in payloads]

    metrics = ServerMetrics()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=5000, metrics=metrics)
    batcher.start()
    calls: list = []

    async def main():
        _spy_call_soon_threadsafe(asyncio.get_running_loop(), calls)
        for _ in range(8):
            batcher.expect()  # the worker holds the batch open until all 8 are in (or 5 s)
        return await asyncio.gather(*(batcher.submit(i, expected=True) for i in range(8)))

    start = time.perf_counter()
    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [i * 10 for i in range(8)]
    assert seen == [list(range(8))]  # one model call with all 8, in order
    assert calls == ["_resolve_all"], calls  # one wake-up of the loop for the whole batch
    assert metrics.sample("hfvision_batch_size_count") == 1
    assert time.perf_counter() - start < 2  # a full batch does not wait for max_wait_ms


def test_one_wake_up_per_loop_with_failures_and_timed_out_requests_in_the_batch():
    """Two event loops share a batch: one call_soon_threadsafe each. A failing request fails alone (the batch is
    retried one by one, still one wake-up per loop); a request that timed out while running is skipped."""
    from hfvision.serving.batching import MicroBatcher

    gate = threading.Event()

    def model(key, payloads):
        gate.wait(10)
        if "bad" in payloads:
            raise ValueError("bad input" if len(payloads) == 1 else "a batch with a bad input")
        return [p.upper() for p in payloads]

    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=5000)
    batcher.start()
    out: dict = {}

    def client(name: str, payloads: list[str], late: bool) -> None:
        async def main():
            calls: list = []
            _spy_call_soon_threadsafe(asyncio.get_running_loop(), calls)
            submits = [batcher.submit(p, expected=True) for p in payloads]
            if late:
                submits.append(batcher.submit("late", timeout=0.2, expected=True))
            results = await asyncio.gather(*submits, return_exceptions=True)
            return results, calls

        out[name] = asyncio.run(main())

    for _ in range(8):
        batcher.expect()
    threads = [
        threading.Thread(target=client, args=("a", ["a1", "bad", "a2"], False)),
        threading.Thread(target=client, args=("b", ["b1", "b2", "b3", "b4"], True)),
    ]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: batcher.running == 8)  # one batch of all 8 (two loops)
        time.sleep(0.5)  # "late" times out while its batch runs
        gate.set()
        for t in threads:
            t.join(30)
    finally:
        gate.set()
        batcher.close()
    results_a, calls_a = out["a"]
    results_b, calls_b = out["b"]
    assert results_a[0] == "A1" and results_a[2] == "A2"
    assert isinstance(results_a[1], ValueError) and str(results_a[1]) == "bad input"
    assert results_b[:4] == ["B1", "B2", "B3", "B4"]
    assert isinstance(results_b[4], (asyncio.TimeoutError, TimeoutError))
    assert calls_a == ["_resolve_all"] and calls_b == ["_resolve_all"], (calls_a, calls_b)


# -- behind a path prefix, with middleware, without the lifespan, and timeouts during preprocessing ------------------
def test_inference_under_a_root_path_and_when_mounted(serve):
    """uvicorn's --root-path and Starlette's Mount put the prefix into scope["path"]: the routes still match."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from hfvision.serving import BackgroundServer, ServeConfig, create_app

    app = create_app(ServeConfig(model="tiny", max_wait_ms=1), runner=EchoRunner())
    with BackgroundServer(app, root_path="/api") as server:  # behind a proxy that strips /api
        for path in ("/", "/models/tiny"):
            response = httpx.post(server.url + path, content=b"abc", timeout=30)
            assert (response.status_code, response.text) == (200, "ABC"), path
        assert httpx.post(server.url + "/models/other", content=b"abc", timeout=30).status_code == 404
    inner = create_app(ServeConfig(model="tiny", max_wait_ms=1), runner=EchoRunner())
    outer = Starlette(routes=[Mount("/v1", app=inner)], lifespan=lambda app: inner.router.lifespan_context(inner))
    server = serve(outer)
    for path in ("/v1/", "/v1/models/tiny"):
        response = httpx.post(server.url + path, content=b"abc", timeout=30)
        assert (response.status_code, response.text) == (200, "ABC"), path


def test_added_middleware_sees_inference_requests(serve):
    from starlette.middleware.base import BaseHTTPMiddleware

    from hfvision.serving import ServeConfig, create_app

    async def tag(request, call_next):
        response = await call_next(request)
        response.headers["x-tag"] = "seen"
        return response

    app = create_app(ServeConfig(model="tiny", max_wait_ms=1), runner=EchoRunner())
    app.add_middleware(BaseHTTPMiddleware, dispatch=tag)
    server = serve(app)
    for path in ("/", "/models/tiny"):
        response = httpx.post(server.url + path, content=b"abc", timeout=30)
        assert (response.status_code, response.text, response.headers.get("x-tag")) == (200, "ABC", "seen")
    assert httpx.get(server.url + "/models/tiny", timeout=30).status_code == 405


def test_without_the_lifespan_inference_is_503():
    from hfvision.serving import ServeConfig, create_app

    app = create_app(ServeConfig(model="tiny", max_wait_ms=1), runner=EchoRunner())

    async def call():
        transport = httpx.ASGITransport(app=app)  # runs no lifespan: no request threads, no batch worker
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/", content=b"abc")

    response = asyncio.run(call())
    assert response.status_code == 503 and "lifespan" in response.json()["error"]


class SlowRunner(EchoRunner):
    def prepare(self, body, content_type):
        time.sleep(0.3)
        return super().prepare(body, content_type)


def test_requests_timed_out_before_preprocessing_are_not_preprocessed(serve):
    """One request thread, 0.3 s per prepare, a 0.5 s timeout, 6 requests at once: the late ones get 504 without
    being prepared, and nothing stays queued or announced."""
    from hfvision.serving import ServeConfig, create_app

    runner = SlowRunner()
    config = ServeConfig(model="tiny", max_wait_ms=1, timeout=0.5, prepare_threads=1)
    app = create_app(config, runner=runner)
    server = serve(app)

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/", content=b"abc") for _ in range(6)))

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses.count(200) >= 1 and statuses.count(504) >= 3, statuses
    assert wait_for(lambda: app.state.metrics.sample("hfvision_requests_in_flight") == 0)
    time.sleep(0.5)  # whatever is still with the request thread finishes or is skipped
    assert runner.prepared < 6  # skipped once their deadline had passed
    batcher = app.state.batcher
    assert batcher.depth == 0 and batcher._incoming == 0
