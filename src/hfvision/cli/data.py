"""``hfvision data prepare SRC DST``: prepare DreamBooth instance photos and print what happened to each file.

Flags are generated from :class:`hfvision.data.PrepareOptions`, so the CLI and the Python API cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def _field_type(field: dataclasses.Field) -> str:
    # the dataclass module uses `from __future__ import annotations`, so types are strings like "int | None"
    return str(field.type).replace(" ", "").replace("|None", "").replace("Optional[", "").rstrip("]")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (help, choices and defaults from the field)."""
    casts = {"int": int, "float": float, "str": str}
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, help_text = _field_type(field), field.metadata.get("help", "")
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            parser.add_argument(flag, type=casts.get(kind, str), default=field.default,
                                choices=field.metadata.get("choices"), help=f"{help_text} (default: %(default)s)")  # fmt: skip


def run_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import PrepareOptions, prepare_instance_images

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(PrepareOptions)}
    report = prepare_instance_images(args.src, args.dst, progress=not args.no_progress, **options)
    if args.report:
        report.to_json(args.report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.to_table())
    if not report.images():
        print(f"hfvision data prepare: no usable image in {args.src}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..data.prepare import PrepareOptions

    p = sub.add_parser("data", help="prepare training data (DreamBooth instance photos)")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prep = data_sub.add_parser(
        "prepare",
        help="smart-crop, resize and caption photos; report every file",
        description="Prepare photos for DreamBooth: faces > saliency > centre square crop, resize, captions "
        "(sidecar name.txt > file name > instance prompt). Source files are never modified; re-runs skip "
        "unchanged photos. Writes DST/prepare_report.json.",
    )
    prep.add_argument("src", help="folder with the photos (not modified)")
    prep.add_argument("dst", help="output folder")
    add_dataclass_arguments(prep, PrepareOptions)
    prep.add_argument("--report", help="also write the JSON report here")
    prep.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=run_prepare)
