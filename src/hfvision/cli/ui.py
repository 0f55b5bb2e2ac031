"""``hfvision ui``: the local web UI (Generate and Classify tabs). Flags come from :class:`hfvision.ui.UIConfig`."""

from __future__ import annotations

import argparse
import dataclasses


def run(args: argparse.Namespace) -> int:
    from ..utils.import_utils import require

    require("gradio", "hfvision ui")
    from ..ui.app import UIConfig, launch
    from ..utils.logging import get_logger

    config = UIConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(UIConfig)})
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        get_logger(__name__).warning("binding %s: the UI has no authentication; anyone who can reach it can use it",
                                     config.host)  # fmt: skip
    demo = launch(config)
    print(f"hfvision ui: running on {demo.local_url} (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..ui.app import UIConfig
    from .data import add_dataclass_arguments

    p = sub.add_parser(
        "ui",
        help="local web UI: generate with your DreamBooth model, classify photos",
        description="A Gradio app with a Generate tab (prompt, subject token, ControlNet, gallery, download) and a "
        "Classify tab (upload, face-first, boxes drawn). Binds 127.0.0.1, never shares publicly. Needs hfvision[ui].",
    )
    add_dataclass_arguments(p, UIConfig)
    p.set_defaults(func=run)
