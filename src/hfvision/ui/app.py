"""The hfvision web UI (Gradio): a Generate tab (text-to-image, DreamBooth subjects, ControlNet) and a Classify tab.

Runs locally: bound to 127.0.0.1 by default, never shared through Gradio's tunnel, analytics off.

>>> from hfvision.ui import UIConfig, launch
>>> demo = launch(UIConfig(model="out/my-dog-dreambooth", classifier="rizvandwiki/gender-classification"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..utils.import_utils import require
from ..utils.logging import get_logger
from .backend import ClassifyBackend, GenerateBackend

logger = get_logger(__name__)

DEFAULT_CLASSIFIER = "rizvandwiki/gender-classification"


@dataclass
class UIConfig:
    """Options of ``hfvision ui``."""

    model: str | None = field(
        default=None, metadata={"help": "text-to-image model offered first (registry key, folder, file or URL)"}
    )
    classifier: str = field(
        default=DEFAULT_CLASSIFIER, metadata={"help": "classifier for the Classify tab (Hub id or folder)"}
    )
    classifier_task: str = field(
        default="gender-classification",
        metadata={"help": "task of the classifier", "choices": ("gender-classification", "image-classification")},
    )
    controlnet: str | None = field(
        default=None, metadata={"help": "extra ControlNet (local folder or Hub id) to offer"}
    )
    host: str = field(
        default="127.0.0.1", metadata={"help": "interface to bind (0.0.0.0 exposes the UI to the network)"}
    )
    port: int = field(default=7860, metadata={"help": "TCP port"})
    output_dir: str | None = field(default=None, metadata={"help": "folder for generated PNGs; unset = a temp folder"})
    steps: int = field(default=25, metadata={"help": "initial number of denoising steps"})
    size: int | None = field(default=None, metadata={"help": "initial width/height; unset = the model's native size"})

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} must be in 0..65535")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.size is not None and (self.size < 64 or self.size % 8):
            raise ValueError(f"size={self.size} must be a multiple of 8 and >= 64")


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (e.g. another program uses it), or ``None``; port 0 is always free."""
    import socket

    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        return f"cannot resolve {host} ({err.strerror})"
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            return f"cannot listen on {host}:{port} ({err.strerror or err}); another program uses it?"
    return None


def build_app(
    config: UIConfig, generate_backend: GenerateBackend | None = None, classify_backend: ClassifyBackend | None = None
):
    """The ``gr.Blocks`` app (not launched).

    Args:
        config (`UIConfig`): models and defaults.
        generate_backend, classify_backend (*optional*): the objects doing the work (built from ``config`` by default).
    """
    require("gradio", "the web UI (hfvision ui)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from .classify_tab import build_classify_tab
    from .generate_tab import build_generate_tab

    generate_backend = generate_backend or GenerateBackend(output_dir=config.output_dir)
    classify_backend = classify_backend or ClassifyBackend(model=config.classifier, task=config.classifier_task)
    models = [config.model] if config.model else []
    controlnets = [config.controlnet] if config.controlnet else []
    with gr.Blocks(analytics_enabled=False, title="hfvision") as demo:
        gr.Markdown("## hfvision\nGenerate with your DreamBooth subject, or classify photos. Runs on this machine.")
        with gr.Tab("Generate", id="generate"):
            build_generate_tab(gr, generate_backend, models, controlnets, {"steps": config.steps, "size": config.size})
        with gr.Tab("Classify", id="classify"):
            build_classify_tab(gr, classify_backend)
    demo.hfvision_backends = (generate_backend, classify_backend)
    return demo


def launch(config: UIConfig, block: bool = False, **build_kwargs: Any):
    """Build and launch the UI on ``config.host:config.port`` (never shared publicly); returns the ``gr.Blocks``
    (``demo.local_url`` is where it runs). With ``block=True`` this serves until interrupted."""
    problem = port_problem(config.host, config.port)
    if problem:  # gradio would otherwise try other ports or fail after building the whole app
        raise OSError(f"port {config.port}: {problem}")
    demo = build_app(config, **build_kwargs)
    allowed = [demo.hfvision_backends[0].output_dir]
    demo.launch(
        server_name=config.host,
        server_port=config.port,
        share=False,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        mcp_server=False,
        allowed_paths=allowed,
        footer_links=[],
        show_error=True,
    )
    logger.info("hfvision UI running on %s", demo.local_url)
    if block:
        demo.block_thread()
    return demo
