"""Bounded load test on loopback: 32 concurrent clients, 256 requests, zero errors, every response equal to the
single-request result for its image, and batches actually formed."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")

CLIENTS, REQUESTS = 32, 256


def test_32_concurrent_clients(vit_pipe, photo_bytes, serve, assert_same_labels):
    from hfvision.data import load_image
    from hfvision.serving import ServeConfig, create_app
    from hfvision.serving.loadgen import run_load

    names = sorted(photo_bytes)
    payloads = [photo_bytes[name] for name in names]
    expected = [vit_pipe(load_image(data), top_k=2) for data in payloads]
    config = ServeConfig(task="image-classification", model="vit", max_batch_size=32, max_wait_ms=5, num_threads=1)
    app = create_app(config, pipe=vit_pipe)
    server = serve(app)
    result = asyncio.run(
        run_load(server.url + "/models/vit", payloads, CLIENTS, requests=REQUESTS, keep_responses=True)
    )
    assert result.errors == 0 and result.statuses[200] == REQUESTS, result.statuses
    assert sorted(result.responses) == list(range(REQUESTS))
    for i, (_, body) in result.responses.items():
        assert_same_labels(json.loads(body), expected[i % len(payloads)])
    metrics = app.state.metrics
    assert metrics.sample("hfvision_requests_total", code="200") == REQUESTS
    calls = metrics.sample("hfvision_batch_size_count")  # number of model calls
    assert calls < REQUESTS / 2, metrics.render()  # requests shared model calls
    assert result.elapsed < 60, f"{REQUESTS} requests took {result.elapsed:.1f} s"


def test_load_result_statistics():
    from hfvision.serving.loadgen import LoadResult, run_load

    result = LoadResult(elapsed=2.0, latencies=[i / 1000 for i in range(1, 101)])
    result.statuses.update({200: 98, 503: 2})
    assert result.count == 100 and result.errors == 2 and result.throughput == 49.0
    assert result.percentile(50) == pytest.approx(50.0) and result.percentile(99) == pytest.approx(99.0)
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(run_load("http://127.0.0.1:1", [b""], 1))
