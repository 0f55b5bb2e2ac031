"""``hfvision convert``: diffusers directory <-> single-file Stable Diffusion checkpoint; LoRA files between the
diffusers and kohya/AUTOMATIC1111 layouts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._checks import USAGE, CLIError


def _parse_metadata(items: list[str] | None, example: str) -> dict[str, str]:
    """``--metadata KEY=VALUE ...`` as a dict (an entry of another shape is a usage error: one line, exit 2)."""
    metadata = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--metadata {item!r} must look like KEY=VALUE, e.g. {example}", USAGE)
        metadata[key] = value
    return metadata


def _check_to_single_file(args: argparse.Namespace) -> None:
    from . import _checks

    _parse_metadata(args.metadata, "trigger_word=sks")
    _checks.existing(args.pipeline_dir, "PIPELINE_DIR", "folder")
    _checks.check_diffusers_folder(Path(args.pipeline_dir), "PIPELINE_DIR")
    pickle = args.format == "ckpt" or Path(args.out).suffix.lower() in (".ckpt", ".bin", ".pt", ".pth")
    if pickle and not args.allow_pickle:
        raise CLIError(
            f"OUT {args.out} would be a pickle, which can run code when loaded; write .safetensors, or add "
            "--allow-pickle if a legacy tool needs a .ckpt",
            USAGE,
        )
    if args.format and Path(args.out).suffix.lower() != f".{args.format}":
        raise CLIError(f"--format {args.format} does not match OUT {args.out}; use a .{args.format} name", USAGE)
    _checks.output_file(args.out, "OUT", args.overwrite)


def _check_from_single_file(args: argparse.Namespace) -> None:
    from . import _checks

    path = _checks.existing(args.file, "FILE", "file")
    if path.suffix.lower() not in (".safetensors", ".ckpt", ".pt", ".pth"):
        raise CLIError(f"FILE {args.file}: expected a .safetensors or .ckpt file", USAGE)
    _checks.check_single_file(path, "FILE")
    _checks.output_folder(args.out_dir, "OUT_DIR", args.overwrite)
    if args.config:
        _checks.existing(args.config, "--config", "folder")


def _to_single_file(args: argparse.Namespace) -> int:
    from ..conversion import to_single_file

    metadata = _parse_metadata(args.metadata, "trigger_word=sks")
    if args.trigger_word:
        metadata["trigger_word"] = args.trigger_word
    if args.base_model:
        metadata["base_model"] = args.base_model
    start = time.perf_counter()
    out = to_single_file(
        args.pipeline_dir, args.out, half=args.half, format=args.format, metadata=metadata, overwrite=args.overwrite
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    if args.verify:
        from ..conversion import verify_single_file

        results = verify_single_file(out, args.pipeline_dir)
        for name, r in results.items():
            print(
                f"  {name:<15} {r.num_tensors} tensors, missing {len(r.missing)}, unexpected {len(r.unexpected)}, "
                f"max |diff| {r.max_abs_diff:.3g}"
            )
        if not all(r.exact for r in results.values()):
            print("verification FAILED")
            return 1
        print("verification passed" + (" (against the originals rounded to float16)" if args.half else ""))
    return 0


def _from_single_file(args: argparse.Namespace) -> int:
    from ..conversion import detect_family, from_single_file

    family, prediction_type = detect_family(args.file)
    print(f"{args.file}: family {family}, prediction type {prediction_type or 'not stated'}")
    start = time.perf_counter()
    out = from_single_file(
        args.file,
        args.out_dir,
        base=args.base,
        prediction_type=args.prediction_type,
        config=args.config,
        overwrite=args.overwrite,
    )
    print(f"wrote diffusers directory {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _check_lora(args: argparse.Namespace) -> None:
    from . import _checks

    # usage errors first: they do not depend on the files
    if Path(args.out).suffix.lower() != ".safetensors":
        raise CLIError(f"OUT {args.out} must end in .safetensors (LoRA files are written as safetensors only)", USAGE)
    _parse_metadata(args.metadata, "modelspec.author=me")
    path = Path(args.input).expanduser()
    if not path.exists():
        raise CLIError(f"IN {args.input} does not exist")
    if path.is_file() and path.suffix.lower() == ".safetensors":
        _checks.check_single_file(path, "IN")
    _checks.output_file(args.out, "OUT", args.overwrite)


def _lora(args: argparse.Namespace) -> int:
    from ..conversion.lora import convert_lora

    metadata = _parse_metadata(args.metadata, "modelspec.author=me")
    out = convert_lora(
        args.input,
        args.out,
        to=args.to,
        overwrite=args.overwrite,
        allow_pickle=args.allow_pickle,
        family=args.family,
        title=args.title,
        trigger_phrase=args.trigger_phrase,
        resolution=args.resolution,
        base_model=args.base_model,
        description=args.description,
        metadata=metadata,
    )
    print(f"wrote {out} ({args.to} layout, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _register_lora(conv: argparse._SubParsersAction) -> None:
    p = conv.add_parser("lora", help="LoRA file: diffusers/PEFT layout <-> kohya/AUTOMATIC1111/ComfyUI layout")
    p.add_argument("input", metavar="IN", help="LoRA .safetensors, or a LoRA training output folder")
    p.add_argument("out", metavar="OUT", help="output .safetensors")
    p.add_argument("--to", required=True, choices=["kohya", "diffusers"], help="layout to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    pickle_help = "accept a .bin/.pt input (loaded with weights_only=True); only for files you trust"
    p.add_argument("--allow-pickle", action="store_true", help=pickle_help)
    family_help = "base model family for modelspec.architecture (default: from the input's header or weights)"
    p.add_argument("--family", choices=["sd1", "sd2", "sd2-v", "sdxl", "flux-dev", "flux-schnell"], help=family_help)
    p.add_argument("--title", help="modelspec.title (default: the input's, else OUT's name)")
    p.add_argument("--trigger-phrase", "--trigger-word", dest="trigger_phrase", help="modelspec.trigger_phrase")
    p.add_argument("--resolution", help="modelspec.resolution, e.g. 512 or 1024x1024")
    p.add_argument("--base-model", help="base model recorded in the header (hfvision.base_model)")
    p.add_argument("--description", help="modelspec.description")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="extra header entry (repeatable)")
    p.set_defaults(func=_lora, check=_check_lora)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="convert between diffusers directories and single-file checkpoints")
    conv = parser.add_subparsers(dest="conversion", metavar="DIRECTION", required=True)
    _register_lora(conv)  # `convert lora` (kept first so the single-file parsers below stay untouched)

    p = conv.add_parser("to-single-file", help="diffusers directory -> original-layout .safetensors/.ckpt")
    p.add_argument("pipeline_dir", help="diffusers Stable Diffusion / SDXL pipeline directory")
    p.add_argument("out", help="output file (.safetensors, or .ckpt with --format ckpt)")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p.add_argument(
        "--format",
        choices=["safetensors", "ckpt"],
        default=None,
        help="file format (default: from the suffix); ckpt is a pickle: needs --allow-pickle",
    )
    p.add_argument("--trigger-word", help="trigger word recorded in the header (modelspec.trigger_phrase)")
    p.add_argument("--base-model", help="base model recorded in the header, e.g. sd15")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="extra header entry (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--verify", action="store_true", help="load the file back and compare every weight")
    p.add_argument("--allow-pickle", action="store_true", help="allow a pickle output (.ckpt) for legacy tools")
    p.set_defaults(func=_to_single_file, check=_check_to_single_file)

    p = conv.add_parser("from-single-file", help="single-file checkpoint -> diffusers directory (offline)")
    p.add_argument("file", help=".safetensors or .ckpt (pickles load only with weights_only=True)")
    p.add_argument("out_dir", help="diffusers directory to create")
    p.add_argument(
        "--base",
        choices=["sd15", "sd21", "sd21-base", "sdxl"],
        help="use this base model's bundled configs (default: configs stored in the file, else the "
        "detected family's base)",
    )
    p.add_argument(
        "--prediction-type", choices=["epsilon", "v_prediction", "v"], help="override the scheduler's prediction type"
    )
    p.add_argument("--config", help="a local diffusers directory whose configs and tokenizers to use")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=_from_single_file, check=_check_from_single_file)
