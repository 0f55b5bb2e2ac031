"""``hfvision data prepare SRC DST``: prepare DreamBooth instance photos and print what happened to each file.

Flags are generated from :class:`hfvision.data.PrepareOptions` by :func:`hfvision.utils.config_parser.parse_config`
(``--config prepare.yaml`` works too), so the CLI and the Python API cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ._checks import CLIError

PROG = "hfvision data prepare"
#: options listed by ``--help`` (the others by ``--help-all``)
VISIBLE = (
    "size",
    "crop",
    "output_format",
    "instance_prompt",
    "caption_from_filename",
    "min_size",
    "allow_upscale",
    "prune",
)
DESCRIPTION = (
    "Prepare photos for DreamBooth: faces > saliency > centre square crop, resize, captions (sidecar name.txt > file "
    "name > instance prompt). Source files are never modified; re-runs skip unchanged photos. Unreadable images are "
    "reported as rejected and skipped (--strict stops at the first, before writing anything). Writes "
    "DST/prepare_report.json."
)


def _extra_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="folder with the photos (not modified)")
    parser.add_argument("dst", help="output folder (re-runs update it)")
    parser.add_argument("--report", help="also write the JSON report here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --report file")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _strict_scan(src, options) -> None:
    """--strict: decode every source image first; the first unusable one stops the run before anything is written."""
    import os
    from pathlib import Path

    from ..data.image_io import IMAGE_EXTENSIONS, ImageLoadError, load_image

    for name in sorted(os.listdir(src)):
        path = Path(src) / name
        if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or path.is_dir():
            continue
        try:
            load_image(path, max_pixels=options.max_pixels, min_size=options.min_size)
        except ImageLoadError as err:
            raise CLIError(
                f"{err} (--strict stops at the first unusable image; without it the file is skipped)"
            ) from None


def check_prepare(args: argparse.Namespace) -> None:
    """Parse the flags (``PrepareOptions`` and the command's own), then check the folders and the report file, and
    with ``--strict`` every source image: all before anything is written."""
    from pathlib import Path

    from ..data.prepare import PrepareOptions
    from . import _checks
    from ._config import parse_command

    options, extra = parse_command(
        PrepareOptions,
        args.extra_argv,
        PROG,
        description=DESCRIPTION,
        visible=VISIBLE,
        extra_arguments=_extra_arguments,
    )
    src = _checks.existing(extra.src, "SRC", "folder")
    dst = Path(extra.dst).expanduser()
    if dst.exists() and not dst.is_dir():
        raise CLIError(f"DST {extra.dst} is a file; give a folder")
    if dst.resolve() == src.resolve():
        raise CLIError(f"DST {extra.dst} is the source folder; choose a separate output folder")
    if extra.report:
        _checks.output_file(extra.report, "--report", extra.overwrite)
    if extra.strict:
        _strict_scan(src, options)
    args.options, args.prepare, args.src, args.dst = options, extra, src, dst


def run_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_instance_images

    extra = args.prepare
    report = prepare_instance_images(
        args.src, args.dst, progress=not extra.no_progress, **dataclasses.asdict(args.options)
    )
    if extra.report:
        report.to_json(extra.report)
    if extra.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.to_table())
    if not report.images():
        print(f"{PROG}: error: no usable image in {extra.src}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ._config import add_config_command

    p = sub.add_parser("data", help="prepare training data (DreamBooth instance photos)")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    help_text = "smart-crop, resize and caption photos; report every file"
    add_config_command(
        data_sub, "prepare", help=help_text, description=DESCRIPTION, run=run_prepare, check=check_prepare
    )
