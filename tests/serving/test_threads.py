"""serving.threads: the request thread pool and the thread -> event loop hand-off."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hfvision.serving.threads import RequestThreads, deliver, settle


def test_run_returns_results_and_raises_errors_on_the_loop():
    threads = RequestThreads(2)
    try:

        async def main():
            names = await asyncio.gather(*(threads.run(lambda: threading.current_thread().name) for _ in range(8)))
            with pytest.raises(ZeroDivisionError):
                await threads.run(lambda: 1 / 0)
            return names, await threads.run(sum, [1, 2, 3])

        names, total = asyncio.run(main())
        assert total == 6 and set(names) <= {"hfvision-prepare-0", "hfvision-prepare-1"}
    finally:
        threads.shutdown(wait=True, timeout=10)


def test_a_thread_survives_what_a_call_raises_and_shutdown_refuses_new_work():
    threads = RequestThreads(1)
    done = threading.Event()

    def exit_call():
        raise SystemExit("would end a plain thread")

    threads.submit(exit_call)
    threads.submit(done.set)  # runs on the same (only) thread afterwards
    assert done.wait(10)
    threads.shutdown(wait=True, timeout=10)
    assert not any(t.is_alive() for t in threads._threads)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(print)


def test_settle_leaves_done_futures_alone_and_deliver_tolerates_a_closed_loop():
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    settle(future, True, 1)
    settle(future, False, ValueError("late"))  # e.g. a result after a timeout: ignored
    assert future.result() == 1
    loop.close()
    deliver(loop, settle, loop.create_future(), True, 2)  # no RuntimeError from the closed loop
