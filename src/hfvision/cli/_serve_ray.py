"""``hfvision serve --backend ray``: the ``--backend`` flag, the checks of the Ray Serve flags (from
:class:`hfvision.serving.ray_serve.RayServeOptions`) and the Ray run. Kept apart from :mod:`.serve`, which only hooks
it in: :func:`add_arguments` in its parser, :func:`run` (or :func:`check`) once the ``ServeConfig`` is built.

    hfvision serve --backend ray --model M --replicas 2
    ray start --head && hfvision serve --backend ray --address auto --model org/model --min-replicas 1 --max-replicas 8
"""

from __future__ import annotations

import argparse
import dataclasses


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend``; the Ray Serve flags come from ``RayServeOptions`` through ``parse_config`` (see ``serve``)."""
    p.add_argument(
        "--backend",
        choices=("uvicorn", "ray"),
        default="uvicorn",
        help="uvicorn (default; --workers) or ray (Ray Serve: --replicas, autoscaling, --address; needs "
        "hfvision[ray])",
    )


def options(args: argparse.Namespace):
    from ..serving.config import RayServeOptions

    return RayServeOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RayServeOptions)})


def check(args: argparse.Namespace) -> None:
    """With the uvicorn backend no Ray flag may be set (it would be silently ignored)."""
    from ..serving.config import RayServeOptions

    if args.backend == "ray":
        options(args)  # validates
        return
    for f in dataclasses.fields(RayServeOptions):
        if getattr(args, f.name) != f.default:
            raise ValueError(f"--{f.name.replace('_', '-')} is a Ray Serve option; add --backend ray")


def run(args: argparse.Namespace, config) -> int:
    """Serve ``config`` on Ray Serve until interrupted (see :mod:`hfvision.serving.ray_serve`)."""
    from ..serving.ray_serve import start_ray

    ray_options = options(args)
    if config.workers > 1:
        raise ValueError("--workers is for the uvicorn backend; with --backend ray use --replicas or autoscaling")
    print(
        f"hfvision serve (ray): {config.task} model {config.model_name} on http://{config.host}:{config.port}",
        flush=True,
    )
    try:
        start_ray(config, ray_options, blocking=True)
    except KeyboardInterrupt:
        print("hfvision serve: stopped", flush=True)
    return 0
