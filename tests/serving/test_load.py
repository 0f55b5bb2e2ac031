"""Bounded load test on loopback: 32 concurrent clients, 256 requests, zero errors, every response equal to the
single-request result for its image, and batches actually formed."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")

CLIENTS, REQUESTS = 32, 256


def test_32_concurrent_clients(vit_pipe, photo_bytes, serve, assert_same_labels):
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app

    names = sorted(photo_bytes)
    expected = {name: vit_pipe(load_image(photo_bytes[name]), top_k=2) for name in names}
    app = create_app(ServeConfig(task="image-classification", model="vit", max_batch_size=32, max_wait_ms=5,
                                 num_threads=1),
                     pipe=vit_pipe)  # fmt: skip
    server = serve(app)
    work = [names[i % len(names)] for i in range(REQUESTS)]
    results: list = [None] * REQUESTS

    async def client(worker: int, http: httpx.AsyncClient):
        for i in range(worker, REQUESTS, CLIENTS):
            response = await http.post("/models/vit", content=photo_bytes[work[i]])
            results[i] = (response.status_code, response.json())

    async def main():
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            await asyncio.gather(*(client(w, http) for w in range(CLIENTS)))

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    errors = [(i, r) for i, r in enumerate(results) if r is None or r[0] != 200]
    assert not errors, errors[:3]
    for name, (_, body) in zip(work, results):
        assert_same_labels(body, expected[name])
    metrics = app.state.metrics
    assert metrics.requests.value(code="200") == REQUESTS
    batches = metrics.batch_size.bucket_counts()  # upper bound -> number of model calls
    assert sum(batches.values()) < REQUESTS and batches[1.0] < REQUESTS, batches  # requests shared model calls
    assert elapsed < 60, f"{REQUESTS} requests took {elapsed:.1f} s"
