"""``hfvision serve --task T --model M``: an HTTP server speaking the Hugging Face Inference API, micro-batched.

Flags come from :class:`hfvision.serving.ServeConfig`. Ctrl+C / SIGTERM stops gracefully: no new connections,
in-flight requests finish.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from . import _serve_ray


def run(args: argparse.Namespace) -> int:
    from ..utils.import_utils import require

    require("fastapi", "hfvision serve")
    require("uvicorn", "hfvision serve")
    import uvicorn

    from ..serving.app import create_app
    from ..serving.config import ServeConfig
    from ..utils.logging import get_logger

    logger = get_logger(__name__)
    config = ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})
    if config.model is None and config.task == "text-to-image":
        raise ValueError(
            "text-to-image needs --model (a registry key like sd15, a folder, a .safetensors file or URL)"
        )
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: the server has no authentication; anyone who can reach it can use it", config.host)
    _serve_ray.check(args)
    if args.backend == "ray":
        return _serve_ray.run(args, config)
    # access lines are info-level: without --verbose they would be formatted per request only to be dropped
    options = dict(host=config.host, port=config.port, log_level="info" if args.verbose else "warning",
                   access_log=bool(args.verbose), timeout_graceful_shutdown=config.shutdown_timeout)  # fmt: skip
    if config.workers > 1:
        # Load the model once here first: a model that does not load must fail now, with its one-line reason,
        # not crash every worker (uvicorn restarts dead workers, forever).
        import gc

        from ..serving.tasks import load_runner

        load_runner(config)  # discarded: each worker loads its own copy
        gc.collect()
        # uvicorn's worker processes import the app themselves: hand them the config through the environment
        os.environ[ServeConfig.ENV_VAR] = config.to_json()
        app, options = "hfvision.serving.app:app_from_env", {**options, "factory": True, "workers": config.workers}
    else:
        app = create_app(config)
    print(f"hfvision serve: {config.task} model {config.model_name} on http://{config.host}:{config.port} "
          f"(POST /models/{config.model_name} or /, GET /health, GET /metrics)"
          f"{f'; {config.workers} worker processes' if config.workers > 1 else ''}", flush=True)  # fmt: skip
    try:
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: SIGTERM ends the process with
        # the usual -15 status, Ctrl+C arrives here as KeyboardInterrupt.
        uvicorn.run(app, **options)
    except KeyboardInterrupt:
        print("hfvision serve: stopped", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..serving.config import ServeConfig
    from .data import add_dataclass_arguments

    p = sub.add_parser(
        "serve",
        help="HTTP inference server (Hugging Face Inference API format, micro-batching)",
        description="Serve a model over HTTP with the Hugging Face Inference API wire format: POST /models/{name} "
        "or / with image bytes (or JSON {inputs: base64, parameters}) -> [{label, score}]; text-to-image JSON -> "
        "PNG. Requests are micro-batched. Binds 127.0.0.1 unless --host says otherwise. Needs hfvision[serve].",
    )
    add_dataclass_arguments(p, ServeConfig)
    _serve_ray.add_arguments(p)
    p.set_defaults(func=run)
