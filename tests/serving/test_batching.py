"""MicroBatcher behaviour with a fake model: batches form, keys never mix, limits, timeouts, failures, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hfvision.serving.batching import BatcherClosedError, MicroBatcher, QueueFullError
from hfvision.serving.metrics import ServerMetrics


class FakeModel:
    """Records each call's (key, payloads) and the thread it ran on; optional delay and gate."""

    def __init__(self, delay: float = 0.0, fail_on=None):
        self.calls, self.threads = [], set()
        self.delay, self.fail_on = delay, fail_on
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key, payloads):
        self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        self.calls.append((key, list(payloads)))
        if self.fail_on is not None and self.fail_on in payloads:
            raise ValueError(f"cannot handle {self.fail_on}")
        time.sleep(self.delay)
        return [(key, p * 10) for p in payloads]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_batched_and_results_routed_back():
    model = FakeModel(delay=0.02)
    metrics = ServerMetrics()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=20, metrics=metrics)
    batcher.start()

    async def main():
        return await asyncio.gather(*(batcher.submit(i, key=i % 2) for i in range(40)))

    results = run(main())
    batcher.close()
    assert results == [(i % 2, i * 10) for i in range(40)]  # each request gets its own result
    sizes = [len(p) for _, p in model.calls]
    assert sum(sizes) == 40 and max(sizes) == 8 and len(sizes) < 40
    for key, payloads in model.calls:  # requests with different parameters never share a batch
        assert all(p % 2 == key for p in payloads)
    assert model.threads == {"hfvision-batcher"}  # model work on the one worker thread
    assert metrics.sample("hfvision_batch_size_count") == len(sizes)
    assert metrics.sample("hfvision_queue_depth") == 0


def test_batch_size_one_disables_batching():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=50)
    batcher.start()

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    start = time.perf_counter()
    assert run(main()) == [(None, i * 10) for i in range(10)]
    batcher.close()
    assert [len(p) for _, p in model.calls] == [1] * 10
    assert time.perf_counter() - start < 2  # a full batch (of one) never waits for max_wait_ms


def test_waits_only_for_announced_requests():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=300)
    batcher.start()
    start = time.perf_counter()
    assert run(batcher.submit(1)) == (None, 10)
    assert time.perf_counter() - start < 0.25  # nothing else announced: a lone request runs at once

    async def announced_joins():
        batcher.expect()  # e.g. a request still being decoded
        first = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0.05)
        second = await batcher.submit(3, expected=True)  # it arrives within max_wait: same batch
        return await first, second

    assert run(announced_joins()) == ((None, 20), (None, 30))

    async def withdrawn():
        batcher.expect()
        task = asyncio.ensure_future(batcher.submit(4))
        await asyncio.sleep(0.05)
        batcher.unexpect()  # the announced request failed (e.g. a bad image): stop waiting for it
        return await task

    start = time.perf_counter()
    assert run(withdrawn()) == (None, 40)
    assert time.perf_counter() - start < 0.25
    batcher.close()
    assert [p for _, p in model.calls] == [[1], [2, 3], [4]]


def test_announced_request_that_never_comes_waits_at_most_max_wait():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=50)
    batcher.start()
    batcher.expect()
    start = time.perf_counter()
    assert run(batcher.submit(1)) == (None, 10)
    elapsed = time.perf_counter() - start
    batcher.close()
    assert 0.04 <= elapsed < 1.0


def test_queue_full_then_timeout_frees_the_slot():
    model = FakeModel()
    model.gate.clear()  # the model blocks: requests pile up
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=0, max_queue=2)
    batcher.start()

    async def main():
        first = asyncio.ensure_future(batcher.submit("running"))
        while batcher.running == 0:  # wait until the worker took it
            await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(batcher.submit(n, timeout=0.2)) for n in ("a", "b")]
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFullError) as info:
            await batcher.submit("c")
        assert info.value.retry_after >= 1 and "2 requests are queued" in str(info.value)
        for task in queued:
            with pytest.raises(asyncio.TimeoutError):
                await task
        assert batcher.depth == 0  # timed-out requests left the queue
        model.gate.set()
        assert await first == (None, "running" * 10)
        assert await batcher.submit("d") == (None, "d" * 10)

    run(main())
    batcher.close()
    assert [p for _, p in model.calls] == [["running"], ["d"]]  # timed-out requests never ran


def test_a_failing_request_fails_alone():
    model = FakeModel(delay=0.01, fail_on=3)
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=30)
    batcher.start()

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)

    results = run(main())
    batcher.close()
    assert isinstance(results[3], ValueError) and "cannot handle 3" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [(None, i * 10) for i in range(6) if i != 3]


def test_close_drains_queued_requests_and_refuses_new_ones():
    model = FakeModel(delay=0.05)
    batcher = MicroBatcher(model, max_batch_size=2, max_wait_ms=0)
    batcher.start()

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(batcher.aclose(drain=True))
        await asyncio.sleep(0.01)
        with pytest.raises(BatcherClosedError):
            await batcher.submit(99)
        results = await asyncio.gather(*tasks)
        await closing
        return results

    assert run(main()) == [(None, i * 10) for i in range(6)]
    assert sum(len(p) for _, p in model.calls) == 6


def test_close_without_drain_fails_queued_requests():
    model = FakeModel()
    model.gate.clear()
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=0)
    batcher.start()

    async def main():
        first = asyncio.ensure_future(batcher.submit(0))
        while batcher.running == 0:
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)
        batcher.close(drain=False, timeout=0)
        with pytest.raises(BatcherClosedError):
            await queued
        model.gate.set()
        return await first

    assert run(main()) == (None, 0)


def test_invalid_settings():
    for kwargs, message in [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"max_queue": 0}, "max_queue"),
    ]:
        with pytest.raises(ValueError, match=message):
            MicroBatcher(FakeModel(), **kwargs)
