"""``hfvision session create NAME`` / ``hfvision session status NAME``: per-subject DreamBooth session folders."""

from __future__ import annotations

import argparse
import json

from ._checks import USAGE, CLIError


def _parse_set(items: list[str]) -> dict:
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set {item!r} must look like KEY=VALUE, e.g. max_train_steps=400", USAGE)
        try:
            settings[key] = json.loads(value)  # numbers, booleans, lists
        except ValueError:
            settings[key] = value
    return settings


def check_create(args: argparse.Namespace) -> None:
    from pathlib import Path

    _parse_set(args.set)
    if Path(args.root).exists() and not Path(args.root).is_dir():
        raise CLIError(f"--root {args.root} is a file; give a folder")


def run_create(args: argparse.Namespace) -> int:
    from ..data.sessions import Session

    settings = _parse_set(args.set)
    for key in ("base_model", "instance_prompt", "class_prompt"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    session = Session.create(args.name, root=args.root, **settings)
    print(f"created session {session.name!r} at {session.path}")
    print(f"  put the subject's photos (and optional NAME.txt captions) in {session.raw_dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ..data.sessions import Session

    info = Session.open(args.name, root=args.root).describe()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"session {info['name']!r} at {info['path']}: {info['status']}")
    if info["hub_repo"]:
        print(f"  Hub mirror: {info['hub_repo']}")
    for key, value in sorted(info["settings"].items()):
        print(f"  {key}: {value}")
    print(
        f"  photos: {info['raw_images']} in raw/ ({info['pending_raw_images']} not prepared yet), "
        f"{info['instance_images']} prepared, {info['class_images']} class images, {info['samples']} samples"
    )
    ckpts = info["checkpoints"]
    print(f"  checkpoints: {', '.join(ckpts) if ckpts else 'none'}" + (" (resumes from the last)" if ckpts else ""))
    last = info["last_run"]
    print(f"  runs: {info['runs']}" + (f", last: {json.dumps(last, ensure_ascii=False)}" if last else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("session", help="create and inspect DreamBooth session folders")
    s = p.add_subparsers(dest="session_command", metavar="ACTION", required=True)
    create = s.add_parser("create", help="make sessions/NAME with raw/, instance_images/, checkpoints/, ...")
    create.add_argument("name", help="session name (a folder under --root)")
    create.add_argument("--root", default="sessions", help="parent folder (default: %(default)s)")
    create.add_argument("--base-model", help="base model repo id or path")
    create.add_argument("--instance-prompt", help="e.g. 'a photo of sks dog'")
    create.add_argument("--class-prompt", help="e.g. 'a photo of a dog'")
    create.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other setting (repeatable)")
    create.set_defaults(func=run_create, check=check_create)
    status = s.add_parser("status", help="show a session's photos, checkpoints, settings and runs")
    status.add_argument("name", help="session name (under --root) or folder path")
    status.add_argument("--root", default="sessions", help="parent folder (default: %(default)s)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)
