"""The FastAPI application: Hugging Face Inference API routes on a micro-batched model.

Routes:

- ``POST /models/{name}`` and ``POST /``: inference (see :mod:`.wire` for the formats, :mod:`.endpoint` for the
  handler);
- ``GET /health``: ``{"status": "ok", ...}`` (503 ``"draining"`` during shutdown);
- ``GET /metrics``: Prometheus text (requests, errors, batch sizes, queue depth, latency);
- ``GET /``: what is served and how to call it.

Errors are ``{"error": "<one line>"}`` with 400 (bad input), 404 (other model name), 413 (body too large),
415 (wrong content type), 503 + ``Retry-After`` (queue full / shutting down), 504 (timeout), 500 (model
failure); the metrics count a client gone before its body arrived as 499.

>>> from hfvision.serving import ServeConfig, create_app
>>> app = create_app(ServeConfig(task="image-classification", model="path/to/model"))  # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
"""

import contextlib
import json
import os
import time
from typing import Any

from ..utils.import_utils import require
from ..utils.logging import get_logger
from .batching import MicroBatcher
from .config import ServeConfig
from .endpoint import InferenceEndpoint, serving_app_class
from .metrics import CONTENT_TYPE, ServerMetrics
from .tasks import load_runner, make_runner
from .threads import RequestThreads

logger = get_logger(__name__)


def _set_torch_threads(num_threads: int | None) -> int | None:
    """Set torch's CPU thread count (process-wide); returns the previous value (``None``: nothing changed)."""
    if num_threads is None:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    return previous


def create_app(config: ServeConfig, runner: Any = None, pipe: Any = None, metrics: ServerMetrics | None = None):
    """Build the FastAPI app serving ``config.model`` for ``config.task``.

    Args:
        config (`ServeConfig`): task, model and server limits.
        runner (*optional*): a ready runner (see :mod:`.tasks`); default: built from ``pipe`` or by loading
            ``config.model``.
        pipe (*optional*): an already-loaded pipeline to serve instead of loading ``config.model``.
        metrics (`ServerMetrics`, *optional*): metrics to record into (a fresh set by default).

    Returns:
        a ``fastapi.FastAPI`` app; ``app.state.batcher`` is its :class:`MicroBatcher`, ``app.state.metrics`` its
        metrics. The batch worker starts with the app (lifespan) and drains queued requests on shutdown.
    """
    require("fastapi", "hfvision serve")
    from fastapi.responses import Response

    if runner is None:
        runner = make_runner(config, pipe) if pipe is not None else load_runner(config)
    metrics = metrics or ServerMetrics()
    batcher = MicroBatcher(runner.run_batch, config.max_batch_size, config.max_wait_ms, config.max_queue, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        previous_threads = _set_torch_threads(config.num_threads)
        # per-request work (parse, decode, preprocess, encode) on a plain thread pool: see .threads
        app.state.prepare_pool = RequestThreads(config.prepare_threads)
        batcher.start()
        logger.info(
            "serving %s (%s): max_batch_size=%d, max_wait_ms=%g",
            config.model_name,
            config.task,
            config.max_batch_size,
            config.max_wait_ms,
        )
        try:
            yield
        finally:
            # uvicorn lets in-flight HTTP requests finish before this runs; drain whatever is still queued.
            try:
                await batcher.aclose(drain=True, timeout=config.shutdown_timeout)
            finally:
                app.state.prepare_pool.shutdown()
                _set_torch_threads(previous_threads)
                logger.info("batch worker stopped")

    app = serving_app_class()(
        title=f"hfvision {config.task}", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.batcher, app.state.metrics, app.state.runner, app.state.config = batcher, metrics, runner, config
    app.state.prepare_pool = None  # created with the running app (lifespan)

    # the inference routes are answered in plain ASGI before FastAPI's stack (see .endpoint: the event loop is the
    # bottleneck under load); FastAPI serves the rest
    app.endpoint = InferenceEndpoint(config=config, runner=runner, batcher=batcher, metrics=metrics, state=app.state)
    for path in ("/", "/models/{name:path}"):  # in the route table too: other methods get 405 (Allow: POST)
        app.router.add_route(path, app.endpoint, methods=["POST"])

    @app.get("/health")
    async def health() -> Response:
        info = {
            "status": "draining" if batcher.closed else "ok",
            "task": config.task,
            "model": config.model_name,
            "queue_depth": batcher.depth,
            "max_batch_size": config.max_batch_size,
            "worker_pid": os.getpid(),
        }
        return Response(
            json.dumps(info).encode(), status_code=503 if batcher.closed else 200, media_type="application/json"
        )

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render().encode(), media_type=CONTENT_TYPE)

    @app.get("/")
    async def index() -> Response:
        info = {
            "task": config.task,
            "model": config.model_name,
            "inference": [f"POST /models/{config.model_name}", "POST /"],
            "parameters": sorted(runner.accepted.model_fields),
            "max_batch_size": config.max_batch_size,
            "max_wait_ms": config.max_wait_ms,
        }
        return Response(json.dumps(info).encode(), media_type="application/json")

    return app


def app_from_env():
    """App factory for worker processes: the :class:`ServeConfig` comes from ``$HFVISION_SERVE_CONFIG`` (JSON).

    ``hfvision serve --workers N`` sets it and starts uvicorn with ``"hfvision.serving.app:app_from_env"``.
    """
    import os

    text = os.environ.get(ServeConfig.ENV_VAR)
    if not text:
        raise RuntimeError(
            f"${ServeConfig.ENV_VAR} is not set: app_from_env is started by `hfvision serve --workers N`"
        )
    return create_app(ServeConfig.from_json(text))


class BackgroundServer:
    """Run an app with uvicorn on a background thread (tests, the demo, benchmarks); loopback by default.

    >>> with BackgroundServer(app) as server:  # doctest: +SKIP
    ...     requests.post(server.url + "/", data=image_bytes)
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, shutdown_timeout: float = 30.0, **uvicorn_kwargs: Any
    ):
        require("uvicorn", "hfvision serve")
        import uvicorn

        uvicorn_kwargs.setdefault("access_log", False)  # warning level: no per-request access lines
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=shutdown_timeout,
            **uvicorn_kwargs,
        )
        self.server = uvicorn.Server(config)  # on a non-main thread uvicorn leaves signal handlers alone
        self._thread = None
        self._port: int | None = None
        self.host = host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not started yet; call start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> "BackgroundServer":
        import threading

        self._thread = threading.Thread(target=self.server.run, name="hfvision-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.host} within {timeout} s")
            time.sleep(0.01)
        self._port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: no new connections, in-flight requests finish, queued work drains."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
