"""``hfvision ui``: the local web UI (Generate and Classify tabs). Flags come from :class:`hfvision.ui.UIConfig`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._checks import CLIError
from ._config import add_config_command, parse_command

PROG = "hfvision ui"
HELP = "local web UI: generate with your DreamBooth model, classify photos"
DESCRIPTION = (
    "A Gradio app with a Generate tab (prompt, subject token, ControlNet, gallery, download) and a Classify tab "
    "(upload, face-first, boxes drawn). Binds 127.0.0.1, never shares publicly. Needs hfvision[ui]."
)


def parse(argv: list[str]):
    """The ``UIConfig`` of ``hfvision ui``'s arguments."""
    from ..ui.app import UIConfig

    return parse_command(UIConfig, argv, PROG, description=DESCRIPTION)


def check(args: argparse.Namespace) -> None:
    """The options, the models given as local paths, and the port: all before Gradio and any model load."""
    from ..ui.app import port_problem
    from . import _checks

    config = args.config = parse(args.extra_argv)
    if config.model and (Path(config.model).expanduser().exists() or _checks.looks_like_path(config.model)):
        _checks.model_source(config.model, "--model", "diffusers")
    if Path(config.classifier).expanduser().exists() or _checks.looks_like_path(config.classifier):
        _checks.model_source(config.classifier, "--classifier", "classifier", config.allow_pickle)
    if config.output_dir and Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        raise CLIError(f"--output-dir {config.output_dir} is a file; give a folder")
    problem = port_problem(config.host, config.port)
    if problem:
        raise CLIError(f"--port {config.port}: {problem}; choose another --port (0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    from ..utils.import_utils import require

    require("gradio", "hfvision ui")
    from ..ui.app import launch
    from .serve import warn_if_public

    config = args.config
    warn_if_public(config.host, "UI")
    demo = launch(config)  # returns once the server is listening
    print(f"hfvision ui: running on {demo.local_url} (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_config_command(sub, "ui", help=HELP, description=DESCRIPTION, run=run, check=check)
