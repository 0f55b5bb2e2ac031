"""Server options: dataclasses for Python, and the source of ``hfvision serve``'s flags (``RayServeOptions``: those of
``--backend ray``, kept here so that parsing them does not import the Ray server module)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from ..data.image_io import MAX_PIXELS
from ..pipelines.registry import DEFAULT_TASK
from ..utils.config_parser import option

TASKS = ("gender-classification", "image-classification", "image-feature-pyramid", "text-to-image")


@dataclass
class ServeConfig:
    """Options of the HTTP server (``hfvision serve``).

    >>> ServeConfig(task="image-classification", model="timm/resnet18.a1_in1k", max_batch_size=16).port
    8080
    >>> ServeConfig().task  # the default task of classify and the UI too
    'gender-classification'
    """

    task: str = option(DEFAULT_TASK, "what the server does", choices=TASKS)
    model: str | None = option(
        None, "Hub id, local folder (or ONNX export), registry key / file / URL for text-to-image"
    )
    host: str = option("127.0.0.1", "interface to bind (0.0.0.0 exposes it to the network)")
    port: int = option(8080, "TCP port")
    max_batch_size: int = option(32, "most requests per model call; 1 disables batching")
    max_wait_ms: float = option(5.0, "longest a request waits for others to join its batch")
    max_queue: int = option(1024, "most waiting requests; more get 503 + Retry-After")
    timeout: float = option(
        60.0,
        "seconds a request may take from its body's arrival to its result: preprocessing, queue and model (then 504)",
    )
    max_body_mb: float = option(20.0, "largest request body in MB (then 413)")
    max_pixels: int = option(MAX_PIXELS, "largest decoded image in pixels (then 400); the limit of classify too")
    onnx: bool = option(False, "run the model's ONNX export on ONNX Runtime")
    allow_pickle: bool = option(
        False, "also load pickle weights (pytorch_model.bin), which can run code: only from a trusted source"
    )
    device: str = option("cpu", "torch device, e.g. cpu, cuda, cuda:1")
    num_threads: int | None = option(
        None, "torch CPU threads while serving (default: torch's choice); 1 is fastest on a busy host"
    )
    name: str | None = option(None, "model name in POST /models/{name} (default: --model as given)")
    max_steps: int = option(150, "text-to-image: largest num_inference_steps accepted")
    max_side: int = option(2048, "text-to-image: largest width/height accepted")
    prepare_threads: int = option(
        4,
        "threads parsing, decoding and preprocessing requests (and encoding large responses) in "
        "parallel; bounds decode memory too",
    )
    shutdown_timeout: float = option(30.0, "seconds to let in-flight requests finish on shutdown")
    workers: int = option(
        1,
        "server processes (uvicorn workers) sharing the port, each with its own model copy, batcher and "
        "/metrics; more than 1 helps when request handling, not the model, is the bottleneck",
    )

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not one of {', '.join(TASKS)}")
        for name in (
            "max_batch_size",
            "max_queue",
            "max_pixels",
            "max_steps",
            "max_side",
            "num_threads",
            "prepare_threads",
            "workers",
        ):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("max_wait_ms", "timeout", "max_body_mb", "shutdown_timeout"):
            if getattr(self, name) < 0 or (name in ("timeout", "max_body_mb") and getattr(self, name) == 0):
                raise ValueError(
                    f"{name}={getattr(self, name)} must be {'> 0' if name in ('timeout', 'max_body_mb') else '>= 0'}"
                )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} must be in 0..65535 (0 picks a free port)")

    ENV_VAR = "HFVISION_SERVE_CONFIG"
    """Environment variable carrying the config (JSON) to worker processes (:func:`~.app.app_from_env`)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def model_name(self) -> str:
        """The name clients use in ``POST /models/{name}``."""
        if self.name:
            return self.name
        if self.model is None:
            return self.task
        text = str(self.model).rstrip("/")
        return os.path.basename(text) if os.path.exists(text) else text


@dataclass
class RayServeOptions:
    """Ray Serve options of ``hfvision serve --backend ray`` (the model, limits and batching come from
    :class:`ServeConfig`).

    >>> RayServeOptions(min_replicas=1, max_replicas=4).autoscaling_config()["max_replicas"]
    4
    """

    replicas: int | None = option(
        None, "ray backend: fixed number of replicas (None: 1, or autoscaling when its bounds are given)"
    )
    min_replicas: int | None = option(None, "ray backend: autoscaling lower bound")
    max_replicas: int | None = option(None, "ray backend: autoscaling upper bound")
    target_ongoing_requests: float | None = option(
        None, "ray backend: autoscaling target of requests in flight per replica (None: 2 x --max-batch-size)"
    )
    replica_cpus: float = option(1.0, "ray backend: CPUs reserved per replica")
    replica_gpus: float = option(0.0, "ray backend: GPUs reserved per replica")
    address: str | None = option(
        None, "ray backend: cluster to join ('auto', HOST:6379 or ray://HOST:10001; None: start a local one)"
    )

    def __post_init__(self):
        for name in ("replicas", "min_replicas", "max_replicas"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "min_replicas" else 1):
                raise ValueError(f"--{name.replace('_', '-')} {value} must be >= {0 if name == 'min_replicas' else 1}")
        if self.autoscaling and self.replicas is not None:
            raise ValueError("--replicas is a fixed count; drop it or drop --min-replicas/--max-replicas")
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"--min-replicas {self.min_replicas} is above --max-replicas {self.max_replicas}")
        if self.target_ongoing_requests is not None and self.target_ongoing_requests <= 0:
            raise ValueError(f"--target-ongoing-requests {self.target_ongoing_requests} must be > 0")
        if self.replica_cpus < 0 or self.replica_gpus < 0:
            raise ValueError("--replica-cpus and --replica-gpus must be >= 0")

    @property
    def autoscaling(self) -> bool:
        return (
            self.min_replicas is not None or self.max_replicas is not None or self.target_ongoing_requests is not None
        )

    def autoscaling_config(self, max_batch_size: int = 32) -> dict[str, Any]:
        """Ray Serve's ``autoscaling_config`` (bounds default to 1..max(min, 1))."""
        low = 1 if self.min_replicas is None else self.min_replicas
        return {
            "min_replicas": low,
            "max_replicas": self.max_replicas if self.max_replicas is not None else max(low, 1),
            "target_ongoing_requests": self.target_ongoing_requests or 2 * max_batch_size,
        }
