"""The inference routes (``POST /`` and ``POST /models/{name}``) as plain ASGI, ahead of FastAPI's own stack.

Under load the server is bound by the interpreter lock, and the event loop is its largest holder. Answering the
inference routes directly on ASGI messages (no Request/Response objects, routing, middleware or telemetry hooks)
roughly halves the loop's time per request; everything else (``/health``, ``/metrics``, ``GET /``, 404/405s) is
FastAPI's (:class:`ServingApp`).

A request is: read the body (413 past the limit) -> ``runner.prepare`` on the prepare pool (parse, decode,
preprocess) -> :meth:`MicroBatcher.submit` -> ``runner.encode``; every failure is an ``{"error": ...}`` answer with
the status :mod:`.app` documents.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

from ..utils.logging import get_logger
from .batching import BatcherClosedError, MicroBatcher, QueueFullError
from .config import ServeConfig
from .metrics import ServerMetrics
from .wire import WireError

logger = get_logger(__name__)

_MODELS = "/models/"


class _Disconnected(Exception):
    """The client went away before its body was read."""


def _route_path(scope: dict) -> str:
    """The path below the app's ``root_path`` (``--root-path``, or where the app is mounted), as routing sees it."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers send lower-case header names
            return value.decode("latin-1")
    return None


async def read_body(scope: dict, receive, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading past the limit."""
    declared = _header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise WireError(400, f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise WireError(413, f"request body is {size} bytes; the limit is {limit} (--max-body-mb)", "too_large")
    chunks, total, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise WireError(413, f"request body exceeds the limit of {limit} bytes (--max-body-mb)", "too_large")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send, status: int, body: bytes, media_type: str, headers: dict | None = None) -> None:
    raw = [(b"content-type", media_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class InferenceEndpoint:
    """Answers ``POST /`` and ``POST /models/{name}`` on raw ASGI messages (see :meth:`handle`).

    Args:
        config (`ServeConfig`): limits and the served model name.
        runner: the task's runner (see :mod:`.tasks`).
        batcher (`MicroBatcher`): where prepared requests are queued.
        metrics (`ServerMetrics`): what is recorded per request.
        state: an object whose ``prepare_pool`` attribute is the executor for ``runner.prepare``/``encode``
            (the app's ``state``; a :class:`~.threads.RequestThreads` created with the running app).
    """

    def __init__(self, *, config: ServeConfig, runner: Any, batcher: MicroBatcher, metrics: ServerMetrics, state: Any):
        self.config, self.runner, self.batcher, self.metrics, self.state = config, runner, batcher, metrics, state
        self.served_names = {config.model_name, str(config.model)} if config.model else {config.model_name}

    async def __call__(self, scope: dict, receive, send) -> None:
        """ASGI app for the inference routes (FastAPI's route table points here; :class:`ServingApp` skips the
        table and calls :meth:`handle` first)."""
        if not await self.handle(scope, receive, send):
            self.metrics.requests.labels(code="404").inc()
            self.metrics.errors.labels(reason="unknown_route").inc()
            await _respond(send, 404, error_body(f"no inference route at {scope['path']}"), "application/json")

    async def handle(self, scope: dict, receive, send) -> bool:
        """Answer ``scope`` if it is an inference request (``True``); ``False``: not ours, nothing was sent."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path = _route_path(scope)
        if path == "/":
            await self.infer(scope, receive, send)
            return True
        if not path.startswith(_MODELS):
            return False
        name = path[len(_MODELS) :]
        if name in self.served_names:
            await self.infer(scope, receive, send)
            return True
        self.metrics.requests.labels(code="404").inc()
        self.metrics.errors.labels(reason="unknown_model").inc()
        message = f"model {name!r} is not served here; use POST /models/{self.config.model_name} or POST /"
        await _respond(send, 404, error_body(message), "application/json")
        return True

    async def infer(self, scope: dict, receive, send) -> None:
        config, runner, batcher, metrics = self.config, self.runner, self.batcher, self.metrics
        start = time.perf_counter()
        metrics.in_flight.inc()
        status, reason, headers = 200, None, None
        batcher.expect()  # the worker may hold a batch open for this request while it is read and decoded
        announced = True
        try:
            if batcher.closed:  # shutting down: the prepare pool may be gone too
                raise BatcherClosedError("the server is shutting down and takes no new requests")
            pool = self.state.prepare_pool
            if pool is None:
                raise WireError(503, "the server has not started: run the app with its lifespan", "not_started")
            body = await read_body(scope, receive, config.max_body_bytes)
            # the pool thread prepares the request and queues it itself: the loop wakes once, for the result
            job = batcher.job()
            pool.submit(batcher.prepare_and_put, job, runner.prepare, body, _header(scope, b"content-type"))
            announced = False  # prepare_and_put settles the announcement
            result = await batcher.wait(job, config.timeout)
            if runner.encode_in_thread:
                content, media_type, headers = await pool.run(runner.encode, result)
            else:
                content, media_type, headers = runner.encode(result)
        except _Disconnected:
            status, reason = 499, "client_disconnected"  # nginx's code; nobody is left to answer
            return
        except asyncio.CancelledError:  # e.g. the server's graceful-shutdown timeout ran out
            status, reason = 499, "cancelled"
            raise
        except WireError as err:
            status, reason, headers = err.status, err.reason, err.headers
            content, media_type = error_body(err.message), "application/json"
        except QueueFullError as err:
            status, reason, headers = 503, "queue_full", {"Retry-After": str(err.retry_after)}
            content, media_type = error_body(str(err)), "application/json"
        except BatcherClosedError as err:
            status, reason, headers = 503, "shutting_down", {"Retry-After": "5"}
            content, media_type = error_body(str(err)), "application/json"
        except (asyncio.TimeoutError, TimeoutError):
            status, reason = 504, "timeout"
            message = f"no result within {config.timeout:g} s (--timeout); the server is overloaded"
            content, media_type = error_body(message), "application/json"
        except Exception as err:  # noqa: BLE001 - a model failure is a 500 with a one-line reason, never a crash
            status, reason = 500, "model_error"
            logger.error("inference failed: %s: %s", type(err).__name__, err, exc_info=logger.isEnabledFor(10))
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            content, media_type = error_body(f"model error: {type(err).__name__}: {message}"), "application/json"
        finally:
            if announced:
                batcher.unexpect()
            metrics.in_flight.dec()
            metrics.requests.labels(code=str(status)).inc()
            if reason is not None:
                metrics.errors.labels(reason=reason).inc()
            metrics.latency.observe(time.perf_counter() - start)
        await _respond(send, status, content, media_type, headers)


@functools.cache
def serving_app_class():
    """:class:`fastapi.FastAPI` whose ``endpoint`` (an :class:`InferenceEndpoint`) sees every request first
    (unless middleware was added: then the route table, where the endpoint is registered too, dispatches)."""
    from fastapi import FastAPI

    class ServingApp(FastAPI):
        endpoint: InferenceEndpoint | None = None

        async def __call__(self, scope, receive, send) -> None:
            # with middleware added (CORS, auth, ...) every request takes the full stack, so it applies to all routes
            if self.endpoint is None or self.user_middleware or not await self.endpoint.handle(scope, receive, send):
                await super().__call__(scope, receive, send)

    return ServingApp
