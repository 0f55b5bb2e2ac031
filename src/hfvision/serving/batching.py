"""Micro-batching: requests from the event loop are queued and run on one worker thread in batches.

The worker takes the oldest waiting request, then up to ``max_batch_size - 1`` more with the same *key* (requests
with different parameters never share a batch), waiting at most ``max_wait_ms`` after the oldest request arrived
for the batch to fill -- and only while more requests are on their way (announced with :meth:`MicroBatcher.expect`
by the server when it starts reading a request), so a lone request never waits. While the model is busy the queue
fills up, so under load batches form without waiting.

- the queue is bounded: :meth:`MicroBatcher.submit` raises :class:`QueueFullError` (-> HTTP 503 + Retry-After);
- a request that times out is dropped from the queue if it has not started (its slot is freed);
- if a batch raises, its requests are retried one by one, so one bad request fails alone;
- :meth:`MicroBatcher.close` stops accepting work and, with ``drain=True``, finishes everything queued.

:meth:`MicroBatcher.submit` queues from the event loop. A server can instead hand the request to a thread that
prepares and queues it (:meth:`~MicroBatcher.job`, :meth:`~MicroBatcher.prepare_and_put`, then
:meth:`~MicroBatcher.wait` on the loop): the loop then wakes once per request, when its batch's results arrive
(one wake-up per batch and loop).

>>> batcher = MicroBatcher(lambda key, items: [x * 2 for x in items], max_batch_size=8, max_wait_ms=2)
>>> batcher.start()
>>> asyncio.run(batcher.submit(21))
42
>>> batcher.close()
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..utils.logging import get_logger
from .metrics import ServerMetrics
from .threads import deliver, settle

logger = get_logger(__name__)

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue`` requests; retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, retry_after: int):
        super().__init__(f"server busy: {depth} requests are queued (the limit); retry in {retry_after} s")
        self.depth, self.retry_after = depth, retry_after


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


class _Job:
    __slots__ = ("payload", "key", "future", "loop", "enqueued", "started")

    def __init__(self, payload: Any, key: Hashable, future: asyncio.Future, loop: asyncio.AbstractEventLoop):
        self.payload, self.key, self.future, self.loop = payload, key, future, loop
        self.enqueued = time.monotonic()
        self.started = False


def _expire(future: asyncio.Future, timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no result within {timeout:g} s"))


def _resolve_all(results: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for future, ok, value in results:
        settle(future, ok, value)


class MicroBatcher:
    """Queue + one worker thread running ``run_batch(key, payloads) -> results`` (same length and order).

    Args:
        run_batch (`Callable[[Hashable, list], Sequence]`): the model call; runs on the worker thread only.
        max_batch_size (`int`, *optional*, defaults to 32): most requests per call (1 disables batching).
        max_wait_ms (`float`, *optional*, defaults to 5): longest a request waits for others to join its batch.
        max_queue (`int`, *optional*, defaults to 1024): most requests waiting; more are refused.
        metrics (`ServerMetrics`, *optional*): where to record batch sizes, model time and queue depth.
        name (`str`, *optional*): worker thread name.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        metrics: ServerMetrics | None = None,
        name: str = "hfvision-batcher",
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be >= 1 (1 disables batching)")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms={max_wait_ms} must be >= 0")
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue} must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._batch_seconds = 0.0  # moving average of one batch's model time, for Retry-After
        self._incoming = 0  # requests announced with expect() and not yet submitted
        self.running = 0  # requests in the batch being computed

    # -- event-loop side ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if not self._thread.is_alive() and not self._closing:
            self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet running)."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closing

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        batches = math.ceil(max(self.depth, 1) / self.max_batch_size)
        return max(1, math.ceil(batches * self._batch_seconds))

    def expect(self) -> None:
        """Announce a request that will be submitted soon (e.g. still being read/decoded): the worker may wait up to
        ``max_wait_ms`` for it to join a batch. Each call must be matched by ``submit(..., expected=True)`` or
        :meth:`unexpect`."""
        with self._cond:
            self._incoming += 1

    def unexpect(self) -> None:
        """Withdraw an :meth:`expect` (the request failed before being submitted)."""
        with self._cond:
            self._incoming = max(0, self._incoming - 1)
            self._cond.notify_all()

    async def submit(self, payload: Any, key: Hashable = None, timeout: float | None = None, expected: bool = False):
        """Queue ``payload`` and wait for its result (``expected``: it was announced with :meth:`expect`).

        Raises:
            `QueueFullError`: ``max_queue`` requests are already waiting.
            `BatcherClosedError`: the batcher is shutting down.
            `TimeoutError`: no result within ``timeout`` seconds (the request is dropped if it has not started).
        """
        job = self.job()
        job.payload, job.key = payload, key
        self.put(job, expected)
        return await self.wait(job, timeout)

    def job(self) -> _Job:
        """A job bound to the running event loop, to fill (``payload``, ``key``) and :meth:`put` from any thread."""
        loop = asyncio.get_running_loop()
        return _Job(None, None, loop.create_future(), loop)

    def put(self, job: _Job, expected: bool = False) -> None:
        """Queue ``job`` (any thread); raises `QueueFullError` / `BatcherClosedError` like :meth:`submit`."""
        with self._cond:
            try:
                if expected:
                    self._incoming = max(0, self._incoming - 1)
                if self._closing:
                    raise BatcherClosedError("the server is shutting down and takes no new requests")
                if job.future.done():  # timed out while being prepared: nobody waits for it (a benign racy read)
                    return
                if len(self._queue) >= self.max_queue:
                    raise QueueFullError(len(self._queue), self.retry_after())
                job.enqueued = time.monotonic()
                self._queue.append(job)
                self._set_depth()
            finally:
                self._cond.notify()  # a new job, or one fewer announced request to hold a batch open for

    def prepare_and_put(self, job: _Job, prepare: Callable[..., tuple[Any, Hashable]], *args: Any) -> None:
        """On a worker-pool thread: ``job.payload, job.key = prepare(*args)``, then :meth:`put` it (as announced
        with :meth:`expect`). A failure fails the job's future instead (waking its loop once); on success only the
        batch's result wakes the loop."""
        if job.future.done():  # timed out (or cancelled) while waiting for a pool thread: skip the work
            self.unexpect()
            return
        try:
            try:
                job.payload, job.key = prepare(*args)
            except BaseException:
                self.unexpect()
                raise
            self.put(job, expected=True)
        except BaseException as err:  # noqa: BLE001 - delivered to the waiting request, the pool thread lives on
            deliver(job.loop, settle, job.future, False, err)

    async def wait(self, job: _Job, timeout: float | None = None) -> Any:
        """The result of a queued ``job``; on timeout it is dropped from the queue unless it has started."""
        # a timer that fails the future, cheaper per request than asyncio.wait_for's wrapper future and callbacks
        timer = None if timeout is None else job.loop.call_later(timeout, _expire, job.future, timeout)
        try:
            return await job.future
        except (TimeoutError, asyncio.TimeoutError, asyncio.CancelledError):  # distinct classes before Python 3.11
            self._discard(job)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish the queued ones, else fail them; join the worker."""
        with self._cond:
            self._closing = True
            if not drain:
                while self._queue:
                    job = self._queue.popleft()
                    deliver(job.loop, settle, job.future, False, BatcherClosedError("server stopped"))
                self._set_depth()
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("batch worker still busy after %.1f s; leaving it to finish in the background", timeout)

    async def aclose(self, drain: bool = True, timeout: float | None = None) -> None:
        """:meth:`close` without blocking the event loop (queued requests keep getting their results)."""
        await asyncio.to_thread(self.close, drain, timeout)

    def _discard(self, job: _Job) -> None:
        with self._cond:
            if not job.started:
                try:
                    self._queue.remove(job)
                except ValueError:
                    pass
                self._set_depth()

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))

    # -- worker side ----------------------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Job] | None:
        """Block until a batch is ready; ``None`` when closing with an empty queue."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue[0]
            deadline = first.enqueued + self.max_wait
            while not self._closing:
                same = sum(1 for j in self._queue if j.key == first.key)
                remaining = deadline - time.monotonic()
                if same >= self.max_batch_size or remaining <= 0 or not self._incoming or first not in self._queue:
                    break
                self._cond.wait(remaining)
            if not self._queue:
                return [] if not self._closing else None
            key = self._queue[0].key
            batch, keep = [], collections.deque()
            while self._queue:
                job = self._queue.popleft()
                if job.key == key and len(batch) < self.max_batch_size:
                    job.started = True
                    batch.append(job)
                else:
                    keep.append(job)
            self._queue = keep
            self._set_depth()
            self.running = len(batch)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)
            self.running = 0

    def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        outcomes = self._call([job.payload for job in batch], batch[0].key)
        if outcomes is None:  # the batch failed: run each request alone so only the bad one fails
            outcomes = [self._call([job.payload], job.key, single=True)[0] for job in batch]
        seconds = time.perf_counter() - start
        self._batch_seconds = seconds if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * seconds
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.batch_latency.observe(seconds)
        # one wake-up per event loop for the whole batch (each call_soon_threadsafe writes to the loop's socket)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for job, (ok, value) in zip(batch, outcomes):
            by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, results in by_loop.items():
            deliver(loop, _resolve_all, results)

    def _call(self, payloads: list, key: Hashable, single: bool = False) -> list[tuple[bool, Any]] | None:
        try:
            results = list(self.run_batch(key, payloads))
            if len(results) != len(payloads):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(payloads)} requests")
            return [(True, r) for r in results]
        except Exception as err:  # noqa: BLE001 - reported to the request(s), the worker keeps running
            if single or len(payloads) == 1:
                logger.debug("request failed: %s", err, exc_info=True)
                return [(False, err)] * len(payloads)
            logger.warning(
                "a batch of %d failed (%s: %s); retrying its requests one by one",
                len(payloads),
                type(err).__name__,
                err,
            )
            return None
