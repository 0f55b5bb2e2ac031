"""``hfvision demo``: run every capability end to end on tiny offline models; writes ``report.html``.

The report is built in a temporary folder beside ``--output`` and renamed into place at the end, so an existing
``--output`` is replaced only with ``--overwrite`` and never left half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path


def check(args: argparse.Namespace) -> None:
    """The output folder is new or empty (or --overwrite), before any model is built."""
    from . import _checks

    _checks.output_folder(args.output, "--output", args.overwrite)


def run(args: argparse.Namespace) -> int:
    from ..testing.hub_server import LocalHubServer, hub_env
    from ..utils.io import atomic_dir

    out = Path(args.output).resolve()
    work = Path(tempfile.mkdtemp(prefix="hfvision-demo-"))
    server = LocalHubServer(work / "hub")
    server.start()
    # huggingface_hub reads these once at import: set them before anything imports it.
    os.environ.update(hub_env(server.endpoint))
    os.environ["HF_HOME"] = str(work / "hf_home")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from ..demo import run_demo

        with atomic_dir(out, overwrite=args.overwrite) as tmp:  # the report links are relative: the folder can move
            run_demo(tmp, work, hub_endpoint=server.endpoint, only=args.only)
        report = out / "report.html"
    finally:
        server.stop()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    summary = json.loads((out / "summary.json").read_text())
    for s in summary:
        print(f"{'FAILED' if s['error'] else 'ok':>6}  {s['seconds']:7.2f} s  {s['title']}")
    print(f"report: {report}")
    print("note: the demo's models are tiny and random; see README.md to run on real Hub models.")
    return 1 if any(s["error"] for s in summary) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every capability end to end on tiny offline models (HTML report)")
    p.add_argument("--output", default="demo-output", help="output folder, new or empty unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    p.add_argument("--only", nargs="*", help="run only the steps whose module name contains one of these words")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (tiny models, local Hub storage)")
    p.set_defaults(func=run, check=check)
