"""``hfvision export onnx MODEL OUT``: validated ONNX export (+ optional int8) of classifiers and SD pipelines."""

from __future__ import annotations

import argparse
import sys

from ._checks import non_negative_float, positive_int

# Kept in sync with hfvision.export.export.TASKS (tested); not imported so `hfvision --help` stays fast.
TASKS = (
    "auto",
    "image-classification",
    "gender-classification",
    "image-feature-pyramid",
    "text-to-image",
    "dreambooth",
    "stable-diffusion",
)
QUANTIZE = ("int8", "int8-dynamic", "int8-static")


def check_onnx(args: argparse.Namespace) -> None:
    """Every argument before the model loads: the output folder is new (or --overwrite), the model is complete."""
    from pathlib import Path

    from . import _checks

    _checks.output_folder(args.output, "OUTPUT", args.overwrite)
    model = Path(args.model).expanduser()
    diffusion = (
        args.task in ("text-to-image", "dreambooth", "stable-diffusion") or (model / "model_index.json").exists()
    )
    if model.is_dir() and diffusion:
        _checks.check_diffusers_folder(model, "MODEL")
    elif model.is_dir() and (model / "config.json").is_file() and args.task == "image-feature-pyramid":
        _checks._weights_in(model, False, "MODEL")
    elif not model.exists() and diffusion:
        _checks.model_source(args.model, "MODEL", "diffusers", revision=args.revision)
    else:
        _checks.model_source(args.model, "MODEL", "classifier", revision=args.revision)
    if args.push_to_hub:
        problem = _checks._hub_problem()
        if problem:
            raise _checks.CLIError(f"--push-to-hub {args.push_to_hub} needs the Hugging Face Hub, and {problem}")
    if args.force_quantize and not args.quantize:
        raise _checks.CLIError("--force-quantize needs --quantize", _checks.USAGE)


def run_onnx(args: argparse.Namespace) -> int:
    from ..export import QuantizationRefusedError, export_onnx, push_onnx_to_hub

    try:
        result = export_onnx(
            args.model,
            args.output,
            task=args.task,
            opset=args.opset,
            dynamic_axes=not args.static_shapes,
            validate=not args.no_validate,
            atol=args.atol,
            overwrite=args.overwrite,
            quantize=args.quantize,
            quantize_threshold=args.quantize_threshold,
            force_quantize=args.force_quantize,
            revision=args.revision,
            trust_remote_code=args.trust_remote_code,
        )
    except QuantizationRefusedError as err:
        print(f"hfvision export onnx: error: {err}", file=sys.stderr)
        return 1
    report = result.report
    validation = report.get("validation", {})
    if validation.get("skipped"):
        print(f"Exported {args.model} to {args.output} WITHOUT validation (--no-validate).")
    elif "components" in validation:  # diffusion pipeline
        for name, comp in validation["components"].items():
            print(
                f"  {name:<15} {len(comp['cases'])} cases  max abs diff {comp['max_abs_diff']:.2e}  "
                f"(atol {comp['atol']:g})"
            )
        pipe = validation["pipeline"]
        print(f"  same-seed images: max abs diff {pipe['max_abs_diff']:.2e} (atol {pipe['atol']:g})")
        print(f"Exported {args.model} to {args.output}: validation passed.")
    else:
        print(result.validation.summary())
        for note in validation.get("notes", []):
            print(f"  note: {note}")
        top1 = validation.get("top1_agreement")
        top1_text = f", top-1 agreement {top1:.0%}" if top1 is not None else ""
        print(
            f"Exported {args.model} to {args.output}: validation passed (max abs diff "
            f"{validation['max_abs_diff']:.2e} <= atol {validation['atol']:g}{top1_text})."
        )
    quant = report.get("quantization")
    if quant:
        print(
            f"int8 ({quant['mode']}): top-1 agreement with fp32 {quant['top1_agreement']:.1%} on {quant['images']} "
            f"photo views, {quant['speedup']:.2f}x fp32 speed, {quant['int8_bytes'] / 1e6:.1f} MB -> "
            f"{quant['file']}{' (FORCED below threshold)' if quant['forced'] else ''}"
        )
    if args.push_to_hub:
        url = push_onnx_to_hub(args.output, args.push_to_hub)
        print(f"Pushed to {args.push_to_hub}: {url}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export models to deployment formats (ONNX)")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT")
    p = formats.add_parser(
        "onnx",
        help="export a classifier, timm feature pyramid or Stable Diffusion/DreamBooth pipeline to ONNX",
        description="Export to ONNX (Optimum's layout), validate ONNX Runtime against PyTorch on dummy inputs and "
        "bundled photos (fails on mismatch), optionally quantize to int8.",
    )
    p.add_argument("model", help="model directory, Hub repo id, or diffusers pipeline directory")
    p.add_argument("output", help="output directory (must be empty unless --overwrite)")
    p.add_argument("--task", default="auto", choices=TASKS, help="what the model does (default: inferred)")
    p.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: 17)")
    p.add_argument("--atol", type=non_negative_float, default=None, help="validation tolerance (default: 1e-4)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default=None,
        help="also write model_quantized.onnx (int8: the family's fastest mode)",
    )
    p.add_argument(
        "--quantize-threshold",
        type=non_negative_float,
        default=0.99,
        help="minimum int8/fp32 top-1 agreement on photos",
    )
    p.add_argument("--force-quantize", action="store_true", help="write the int8 model even below the threshold")
    p.add_argument("--static-shapes", action="store_true", help="fixed batch 1 and input size (no dynamic axes)")
    p.add_argument("--no-validate", action="store_true", help="skip the ONNX Runtime vs PyTorch validation")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the export to this Hub repo")
    p.add_argument("--revision", default=None, help="Hub revision of MODEL")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the Hub")
    p.set_defaults(func=run_onnx, check=check_onnx)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
