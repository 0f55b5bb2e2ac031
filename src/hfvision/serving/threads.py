"""A minimal thread pool for per-request work (parsing, decoding, preprocessing, encoding).

``concurrent.futures.ThreadPoolExecutor`` costs a ``Future`` (with its own ``Condition``) and two Python-level
semaphore operations per call; under a server's load all of it runs under the interpreter lock, which is the
bottleneck. :class:`RequestThreads` only queues ``(fn, args)`` on a C ``SimpleQueue``; callers report results
themselves (:meth:`MicroBatcher.prepare_and_put`) or await :meth:`RequestThreads.run`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)


def settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    """Set ``future``'s result (``ok``) or exception, unless it is already done (timed out, cancelled)."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def deliver(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``loop.call_soon_threadsafe(callback, *args)`` from another thread; a closed loop has nobody to deliver to."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # "Event loop is closed"
        logger.debug("event loop closed before a result could be delivered")


class RequestThreads:
    """``num_threads`` daemon threads running submitted calls in submission order.

    >>> threads = RequestThreads(2)
    >>> threads.submit(print, "hello")  # runs on a pool thread  # doctest: +SKIP
    >>> await threads.run(sum, [1, 2])  # from a coroutine  # doctest: +SKIP
    3
    >>> threads.shutdown()
    """

    def __init__(self, num_threads: int, name: str = "hfvision-prepare"):
        if num_threads < 1:
            raise ValueError(f"num_threads={num_threads} must be >= 1")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(num_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread; its exceptions are logged (report them from ``fn`` to be seen)."""
        if self._closed:
            raise RuntimeError("the request threads are shut down")
        self._queue.put((fn, args))

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a pool thread, awaited from the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def call() -> None:
            try:
                result, ok = fn(*args), True
            except BaseException as err:  # noqa: BLE001 - delivered to the awaiting coroutine
                result, ok = err, False
            deliver(loop, settle, future, ok, result)

        self.submit(call)
        return await future

    def shutdown(self, wait: bool = False, timeout: float | None = None) -> None:
        """Take no more work; the threads finish what is queued, then exit (``wait``: join them)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a pool thread never dies of one request
                logger.exception("request thread: %s failed", getattr(fn, "__qualname__", fn))
