"""``hfvision serve --backend ray``: the same HTTP API on Ray Serve (replicas, autoscaling, several machines).

Each replica loads the model once and answers ``POST /`` and ``POST /models/{name}`` with ``hfvision serve``'s wire
format, limits and error codes (:mod:`.wire`, :mod:`.tasks`, :func:`.endpoint.read_body`); requests are batched by
Ray Serve's own ``@serve.batch`` (``--max-batch-size``, ``--max-wait-ms``), not by :class:`.batching.MicroBatcher`.
Ray Serve answers 503 itself past ``--max-queue`` waiting requests per proxy. ``GET /health`` and ``GET /`` work as
with uvicorn; ``/metrics`` is Ray's (the Ray dashboard / Prometheus export), not hfvision's.

Needs the ``[ray]`` extra. On one machine ``hfvision serve --backend ray`` starts a local Ray instance; on a cluster
start Ray with ``ray start --head`` on one node and ``ray start --address HEAD:6379`` on the others, then run
``hfvision serve --backend ray --address auto`` on the head (the model must be a Hub id or on a path every node sees).

>>> from hfvision.serving import ServeConfig
>>> from hfvision.serving.ray_serve import RayServeOptions, start_ray
>>> start_ray(ServeConfig(model="path/to/vit"), RayServeOptions(min_replicas=1, max_replicas=4))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..utils.import_utils import require
from ..utils.logging import get_logger
from .config import RayServeOptions, ServeConfig  # RayServeOptions: imported from here too
from .endpoint import _MODELS, _Disconnected, _route_path, error_body, read_body
from .wire import WireError

logger = get_logger(__name__)

APP_NAME = "hfvision"


def _json(status: int, payload: Any, headers: dict | None = None):
    from starlette.responses import Response

    return Response(json.dumps(payload).encode(), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict | None = None):
    from starlette.responses import Response

    return Response(error_body(message), status_code=status, media_type="application/json", headers=headers)


class HttpFront:
    """Request -> response for one replica, with ``hfvision serve``'s routes, limits and error codes.

    Args:
        config (`ServeConfig`): limits and the served model name.
        runner: the task's runner (:mod:`.tasks`): ``prepare`` and ``encode`` run here, on threads.
        infer (`Callable[[key, payload], Awaitable[result]]`): queues one prepared request for a batched model call
            (the Ray deployment's ``@serve.batch`` method).
    """

    def __init__(self, config: ServeConfig, runner: Any, infer: Callable[[Any, Any], Awaitable[Any]]):
        self.config, self.runner, self.infer = config, runner, infer
        self.served_names = {config.model_name, str(config.model)} if config.model else {config.model_name}

    async def __call__(self, request) -> Any:
        """Answer a Starlette ``request`` (what Ray Serve hands a deployment)."""
        path, method = _route_path(request.scope), request.method
        if path == "/health" and method == "GET":
            info = {"status": "ok", "task": self.config.task, "model": self.config.model_name}
            return _json(200, {**info, "max_batch_size": self.config.max_batch_size, "worker_pid": os.getpid()})
        inference = path == "/" or path.startswith(_MODELS)
        if method != "POST":
            if path == "/" and method == "GET":
                routes = [f"POST /models/{self.config.model_name}", "POST /"]
                info = {"task": self.config.task, "model": self.config.model_name, "inference": routes}
                return _json(200, {**info, "parameters": sorted(self.runner.accepted), "backend": "ray"})
            if inference:
                return _error(405, f"{method} is not allowed on {path}; use POST", {"Allow": "POST"})
            return _error(404, f"no route at {path}")
        if not inference:
            return _error(404, f"no inference route at {path}")
        if path != "/" and path[len(_MODELS) :] not in self.served_names:
            name = path[len(_MODELS) :]
            message = f"model {name!r} is not served here; use POST /models/{self.config.model_name} or POST /"
            return _error(404, message)
        return await self.answer(request)

    async def answer(self, request) -> Any:
        from starlette.responses import Response

        config, runner = self.config, self.runner
        start = time.perf_counter()
        try:
            body = await read_body(request.scope, request.receive, config.max_body_bytes)
            payload, key = await asyncio.to_thread(runner.prepare, body, request.headers.get("content-type"))
            remaining = max(0.0, config.timeout - (time.perf_counter() - start))
            result = await asyncio.wait_for(self.infer(key, payload), remaining)
            if runner.encode_in_thread:
                content, media_type, headers = await asyncio.to_thread(runner.encode, result)
            else:
                content, media_type, headers = runner.encode(result)
        except _Disconnected:
            return Response(b"", status_code=499)  # nobody is left to read it
        except WireError as err:
            return _error(err.status, err.message, err.headers)
        except (asyncio.TimeoutError, TimeoutError):
            return _error(504, f"no result within {config.timeout:g} s (--timeout); the server is overloaded")
        except Exception as err:  # noqa: BLE001 - a model failure is a 500 with a one-line reason, never a crash
            logger.error("inference failed: %s: %s", type(err).__name__, err)
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return _error(500, f"model error: {type(err).__name__}: {message}")
        return Response(content, media_type=media_type, headers=headers)


async def run_grouped(run_batch: Callable, items: list[tuple[Any, Any]]) -> list[Any]:
    """Run ``(key, payload)`` items as one model call per distinct key (requests with other parameters cannot share
    a call), each on a thread; a failing call's items get its exception as their result."""
    groups: dict[Any, list[int]] = {}
    for i, (key, _) in enumerate(items):
        groups.setdefault(key, []).append(i)
    results: list[Any] = [None] * len(items)
    for key, positions in groups.items():
        try:
            out = await asyncio.to_thread(run_batch, key, [items[i][1] for i in positions])
        except Exception as err:  # noqa: BLE001 - delivered to each request of this group as a 500
            out = [err] * len(positions)
        for i, result in zip(positions, out):
            results[i] = result
    return results


@functools.cache
def deployment_class():
    """The Ray Serve deployment class (built on first use, so importing this module does not import ray)."""
    require("ray", "hfvision serve --backend ray")
    from ray import serve

    @serve.deployment(name="hfvision")
    class HfvisionDeployment:
        """One replica: the model, Ray Serve's batch queue and :class:`HttpFront`."""

        def __init__(self, config_json: str):
            from .app import _set_torch_threads
            from .tasks import load_runner

            config = ServeConfig.from_json(config_json)
            _set_torch_threads(config.num_threads)
            self.runner = load_runner(config)
            self.batch.set_max_batch_size(config.max_batch_size)
            self.batch.set_batch_wait_timeout_s(config.max_wait_ms / 1000)
            self.front = HttpFront(config, self.runner, self.infer)

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
        async def batch(self, items: list[tuple[Any, Any]]) -> list[Any]:
            return await run_grouped(self.runner.run_batch, items)

        async def infer(self, key: Any, payload: Any) -> Any:
            result = await self.batch((key, payload))
            if isinstance(result, BaseException):
                raise result
            return result

        async def __call__(self, request):
            return await self.front(request)

    return HfvisionDeployment


def build_app(config: ServeConfig, options: RayServeOptions):
    """The Ray Serve application (``Deployment.bind(...)``) for ``config`` with ``options``' replicas."""
    from ray.serve.config import BackpressureConfig

    deployment_options: dict[str, Any] = dict(
        # one batch running and the next one forming per replica
        max_ongoing_requests=2 * config.max_batch_size,
        max_queued_requests=config.max_queue,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
        graceful_shutdown_timeout_s=config.shutdown_timeout,
        ray_actor_options={"num_cpus": options.replica_cpus, "num_gpus": options.replica_gpus},
    )
    if options.autoscaling:
        deployment_options["autoscaling_config"] = options.autoscaling_config(config.max_batch_size)
    else:
        deployment_options["num_replicas"] = options.replicas or 1
    return deployment_class().options(**deployment_options).bind(config.to_json())


def start_ray(config: ServeConfig, options: RayServeOptions, blocking: bool = False):
    """Connect to (``options.address``) or start Ray, start Serve's HTTP proxy on ``config.host:config.port`` and
    deploy the model; returns the app's handle (with ``blocking=True``, serves until interrupted)."""
    require("ray", "hfvision serve --backend ray")
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level="WARNING")
    serve.start(http_options={"host": config.host, "port": config.port, "request_timeout_s": config.timeout + 5})
    logger.info("deploying %s (%s) on Ray Serve: %s", config.model_name, config.task, dataclasses.asdict(options))
    # no per-request access lines (like hfvision serve without --verbose): at INFO they cost the replica and the proxy
    logging_config = {"log_level": "WARNING", "enable_access_log": False}
    app = build_app(config, options)
    return serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking, logging_config=logging_config)


def stop_ray() -> None:
    """Remove the app and stop Serve (Ray itself keeps running when it was joined with ``--address``)."""
    from ray import serve

    serve.shutdown()
