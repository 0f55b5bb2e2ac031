"""``hfvision serve --task T --model M``: an HTTP server speaking the Hugging Face Inference API, micro-batched.

Flags come from :class:`hfvision.serving.ServeConfig`. Ctrl+C / SIGTERM stops gracefully: no new connections,
in-flight requests finish. The port is taken before the model loads (a taken port fails at once), and the address is
printed only once the server is listening.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket

from . import _serve_ray
from ._checks import USAGE, CLIError
from ._config import add_config_command, parse_command

PROG = "hfvision serve"
HELP = "HTTP inference server (Hugging Face Inference API format, micro-batching)"
DESCRIPTION = (
    "Serve a model over HTTP with the Hugging Face Inference API wire format: POST /models/{name} or / with image "
    "bytes (or JSON {inputs: base64, parameters}) -> [{label, score}]; text-to-image JSON -> PNG. Requests are "
    "micro-batched. Binds 127.0.0.1 unless --host says otherwise. Needs hfvision[serve]. --help-all lists the Ray "
    "Serve options (--backend ray)."
)


def parse(argv: list[str]):
    """``(ServeConfig, RayServeOptions, namespace with backend)`` of ``hfvision serve``'s arguments."""
    from ..serving.config import RayServeOptions, ServeConfig

    (config, ray_options), extra = parse_command(
        (ServeConfig, RayServeOptions),
        argv,
        PROG,
        description=DESCRIPTION,
        usage="%(prog)s [--task TASK] [--model MODEL] [--port PORT] [--config YAML] [options]",
        visible=[f.name for f in dataclasses.fields(ServeConfig)],
        extra_arguments=_serve_ray.add_arguments,
    )
    return config, ray_options, extra


def warn_if_public(host: str, what: str) -> None:
    """Binding beyond this machine: say once that the ``what`` (server, UI) has no authentication."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        from ..utils.logging import get_logger

        get_logger(__name__).warning(
            "binding %s: the %s has no authentication; anyone who can reach it can use it", host, what
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``SO_REUSEADDR`` like uvicorn's); a taken port is a one-line error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise CLIError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise CLIError(
            f"--port {port}: cannot listen on {host}:{port} ({err.strerror or err}); another program uses it? "
            "Choose another --port (0 picks a free one)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check(args: argparse.Namespace) -> None:
    """Parse the flags, then check the values, the model and the port: all before any model loads."""
    from . import _checks

    config, ray_options, extra = parse(args.extra_argv)
    args.config, args.backend = config, extra.backend
    vars(args).update(dataclasses.asdict(ray_options))  # what _serve_ray reads
    try:
        _serve_ray.check(args)  # Ray flags only with --backend ray
    except ValueError as err:  # a Ray flag without --backend ray, or a Ray value out of range: a usage error
        raise CLIError(str(err), USAGE) from None
    if args.backend == "ray" and config.workers > 1:
        raise CLIError("--workers is for the uvicorn backend; with --backend ray use --replicas or autoscaling", USAGE)
    if config.model is None and config.task == "text-to-image":
        raise CLIError(
            "--task text-to-image needs --model (a registry key like sd15, a folder, a .safetensors file)", USAGE
        )
    if config.model is not None:
        kind = "diffusers" if config.task == "text-to-image" else "classifier"
        _checks.model_source(config.model, "--model", kind, config.allow_pickle)
        if (
            config.onnx
            and os.path.isdir(config.model)
            and not os.path.isfile(os.path.join(config.model, "model.onnx"))
        ):
            raise CLIError(f"--onnx: {config.model} has no model.onnx; export it first (hfvision export onnx)")
    else:
        from ..pipelines.registry import TASKS

        if "default" not in TASKS.get(config.task, {}):
            raise CLIError(f"--task {config.task} has no default model; pass --model <Hub id or folder>", USAGE)
        repo, revision = TASKS[config.task]["default"]["model"]
        _checks.model_source(repo, "--model (default)", "classifier", revision=revision)
    _checks.check_device(config.device)
    if args.backend == "ray":  # Ray Serve binds the port itself: only check that it is free
        bind(config.host, config.port).close()
    else:
        args.socket = bind(config.host, config.port)  # before the model loads: a taken port fails at once


def run(args: argparse.Namespace) -> int:
    from ..utils.import_utils import require

    require("fastapi", "hfvision serve")
    require("uvicorn", "hfvision serve")
    import uvicorn

    from ..serving.app import create_app
    from ..serving.config import ServeConfig

    config = args.config
    warn_if_public(config.host, "server")
    if args.backend == "ray":
        return _serve_ray.run(args, config)
    sock = getattr(args, "socket", None) or bind(config.host, config.port)
    port = sock.getsockname()[1]
    # access lines are info-level: without --verbose they would be formatted per request only to be dropped
    options = dict(
        host=config.host,
        port=port,
        log_level="info" if args.verbose else "warning",
        access_log=bool(args.verbose),
        timeout_graceful_shutdown=config.shutdown_timeout,
    )
    try:
        if config.workers > 1:
            # Load the model once here first: a model that does not load must fail now, with its one-line reason,
            # not crash every worker (uvicorn restarts dead workers, forever).
            import gc

            from ..serving.tasks import load_runner

            load_runner(config)  # discarded: each worker loads its own copy
            gc.collect()
            # uvicorn's worker processes import the app themselves: hand them the config through the environment
            os.environ[ServeConfig.ENV_VAR] = dataclasses.replace(config, port=port).to_json()
            uv_config = uvicorn.Config(
                "hfvision.serving.app:app_from_env", factory=True, workers=config.workers, **options
            )
            server = None
        else:
            uv_config = uvicorn.Config(create_app(config), **options)
            server = uvicorn.Server(uv_config)
        print(
            f"hfvision serve: {config.task} model {config.model_name} on http://{config.host}:{port} "
            f"(POST /models/{config.model_name} or /, GET /health, GET /metrics)"
            f"{f'; {config.workers} worker processes' if config.workers > 1 else ''}",
            flush=True,
        )
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: SIGTERM ends the process with
        # the usual -15 status, Ctrl+C arrives here as KeyboardInterrupt.
        if server is None:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(uv_config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        print("hfvision serve: stopped", flush=True)
    finally:
        sock.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_config_command(sub, "serve", help=HELP, description=DESCRIPTION, run=run, check=check)
