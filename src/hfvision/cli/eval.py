"""``hfvision eval dreambooth``: the DreamBooth quality table (CLIP-I, DINO, CLIP-T, prior drift) for any pipeline.

Every argument is checked before a model is loaded; a bad one prints a one-line error and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluation import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL

_LOCAL_HINTS = (".", "/", "~")


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _check_model(flag: str, value: str) -> None:
    from ..models.loading import classify_source

    try:
        classify_source(value)
    except FileNotFoundError as err:
        raise ValueError(f"{flag} {value}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def _check_embedder(flag: str, value: str) -> None:
    path = Path(value).expanduser()
    if (value.startswith(_LOCAL_HINTS) or path.exists()) and not (path / "config.json").is_file():
        raise ValueError(
            f"{flag} {value} is not a model folder (no config.json); pass a Hub id or a saved model folder"
        )


def validate(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """Check every argument without loading a model: returns (instance image paths, prompts)."""
    from ..data.image_io import IMAGE_EXTENSIONS

    _check_model("MODEL", args.model)
    folder = Path(args.instance_data_dir)
    if not folder.is_dir():
        raise ValueError(f"--instance-data-dir {folder} is not a folder of subject photos")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not images:
        raise ValueError(f"--instance-data-dir {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if not Path(args.prompts).is_file():
        raise ValueError(f"--prompts {args.prompts} is not a file; write one prompt per line")
    prompts = read_prompts(args.prompts)
    if not prompts:
        raise ValueError(f"--prompts {args.prompts} holds no prompts (one per line, # for comments)")
    if args.class_prompt and not args.base_model:
        raise ValueError("--class-prompt needs --base-model (drift compares with the base model's images)")
    if args.base_model and not args.class_prompt:
        raise ValueError("--base-model needs --class-prompt, e.g. --class-prompt 'a photo of a dog'")
    if args.base_model:
        _check_model("--base-model", args.base_model)
    _check_embedder("--clip-model", args.clip_model)
    _check_embedder("--dino-model", args.dino_model)
    for flag in ("num_images_per_prompt", "num_inference_steps"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be at least 1")
    for flag in ("height", "width"):
        value = getattr(args, flag)
        if value is not None and (value <= 0 or value % 8):
            raise ValueError(f"--{flag}={value} must be a positive multiple of 8; try {max(8, value // 8 * 8)}")
    out = Path(args.output)
    if out.suffix.lower() != ".json":
        raise ValueError(f"--output {out} must end in .json")
    if not out.parent.is_dir():
        raise ValueError(f"--output {out}: folder {out.parent} does not exist")
    return images, prompts


def format_table(per_prompt: list[dict], metrics: dict) -> str:
    """A plain-text table: one row per prompt, then the means (and drift)."""
    columns = ("clip_i", "dino", "clip_t")
    rows = [(row["prompt"], *(f"{row[c]:.4f}" for c in columns)) for row in per_prompt]
    rows.append(("mean", *(f"{metrics[c]:.4f}" for c in columns)))
    width = max(len("prompt"), *(len(r[0]) for r in rows))
    lines = ["prompt".ljust(width) + "".join(f"  {c:>7}" for c in columns)]
    lines += [r[0].ljust(width) + "".join(f"  {v:>7}" for v in r[1:]) for r in rows]
    if "drift" in metrics:
        lines.append(f"drift (1 - DINO similarity to the base, same seeds): {metrics['drift']:.4f}")
    return "\n".join(lines)


def _eval_dreambooth(args: argparse.Namespace) -> int:
    try:
        image_paths, prompts = validate(args)
    except ValueError as err:
        print(f"hfvision eval dreambooth: error: {err}", file=sys.stderr)
        return 2

    from ..data import load_image
    from ..evaluation import ClipEmbedder, DinoEmbedder, evaluate_pipeline
    from ..models import load_pipeline
    from ..utils.io import atomic_write

    instance_images = [load_image(p) for p in image_paths]
    pipe = load_pipeline(args.model, revision=args.revision).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    base = None
    if args.base_model:
        base = load_pipeline(args.base_model).to(args.device)
        base.set_progress_bar_config(disable=True)
    call_kwargs = {"num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale}
    call_kwargs.update({k: getattr(args, k) for k in ("height", "width") if getattr(args, k) is not None})
    result = evaluate_pipeline(
        pipe,
        instance_images,
        prompts,
        class_prompts=args.class_prompt or None,
        base_pipeline=base,
        identifier=args.identifier,
        class_noun=args.class_noun,
        clip=ClipEmbedder.from_pretrained(args.clip_model, device=args.device, allow_pickle=args.allow_pickle),
        dino=DinoEmbedder.from_pretrained(args.dino_model, device=args.device, allow_pickle=args.allow_pickle),
        num_images_per_prompt=args.num_images_per_prompt,
        seed=args.seed,
        **call_kwargs,
    )
    if args.save_images:
        folder = Path(args.save_images)
        folder.mkdir(parents=True, exist_ok=True)
        for p, row in enumerate(result.images):
            for i, image in enumerate(row):
                image.save(folder / f"{p}-{i}.png")
    report = {
        "model": args.model,
        "metrics": result.metrics,
        "per_prompt": result.per_prompt,
        "settings": {
            "instance_images": [str(p) for p in image_paths],
            "class_prompts": args.class_prompt or [],
            "base_model": args.base_model,
            "clip_model": args.clip_model,
            "dino_model": args.dino_model,
            "num_images_per_prompt": args.num_images_per_prompt,
            "seed": args.seed,
            **call_kwargs,
        },
    }
    with atomic_write(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(format_table(result.per_prompt, result.metrics))
    print(f"wrote {args.output}")
    return 0


def _eval_report(args: argparse.Namespace) -> int:
    from ..evaluation import METRICS

    run = Path(args.output_dir)
    if not run.is_dir():
        print(f"hfvision eval report: error: {run} is not a run folder", file=sys.stderr)
        return 2
    if args.best_by is not None and args.best_by not in METRICS:
        print(
            f"hfvision eval report: error: --best-by {args.best_by!r} is not one of {', '.join(METRICS)}",
            file=sys.stderr,
        )
        return 2
    from ..evaluation.report import write_run_report

    path = write_run_report(run, best_by=args.best_by, samples_dir=args.samples_dir)
    print(f"wrote {path}")
    return 0


def _option(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """``--name-with-dashes`` like the rest of the hfvision CLI, with the underscore spelling (diffusers' training
    scripts, which DreamBooth users know) accepted as an alias."""
    flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
    parser.add_argument(*flags, dest=name, **kwargs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure model quality (DreamBooth: CLIP-I, DINO, CLIP-T, prior drift)")
    esub = p.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    d = esub.add_parser(
        "dreambooth",
        help="subject fidelity (CLIP-I, DINO), prompt fidelity (CLIP-T) and prior drift of any pipeline",
        description="Generates every prompt with fixed seeds and scores the images against the subject photos. "
        "Flags are spelled with dashes; the underscore spellings (--instance_data_dir, ...) also work.",
    )
    d.add_argument("model", metavar="MODEL", help="registry key, diffusers folder, .safetensors, URL or Hub id")
    _option(d, "instance_data_dir", required=True, help="folder of the subject photos")
    _option(d, "prompts", required=True, help="text file, one prompt per line; {token}/{class} expand")
    _option(
        d, "class_prompt", action="append", default=[], help="class prompt for drift (repeatable); {class} expands"
    )
    _option(d, "base_model", default=None, help="the base model drift compares with (same seeds)")
    _option(d, "identifier", default=None, help="trained token, removed for CLIP-T (default: the model's)")
    _option(d, "class_noun", default=None, help="what {class} expands to (default: the model's)")
    _option(d, "clip_model", default=DEFAULT_CLIP_MODEL, help=f"CLIP Hub id or folder ({DEFAULT_CLIP_MODEL})")
    _option(d, "dino_model", default=DEFAULT_DINO_MODEL, help=f"DINO Hub id or folder ({DEFAULT_DINO_MODEL})")
    _option(d, "num_images_per_prompt", type=int, default=4, help="images generated per prompt")
    _option(d, "num_inference_steps", type=int, default=30, help="denoising steps per image")
    _option(d, "guidance_scale", type=float, default=7.5, help="classifier-free guidance scale")
    _option(d, "height", type=int, default=None, help="pixels, multiple of 8 (default: the model's)")
    _option(d, "width", type=int, default=None, help="pixels, multiple of 8 (default: the model's)")
    _option(d, "seed", type=int, default=0, help="prompt i uses seed + i")
    _option(d, "revision", default=None, help="Hub revision of MODEL")
    _option(d, "device", default="cpu", help="torch device, e.g. cpu, cuda")
    _option(d, "allow_pickle", action="store_true", help="also load pickle (.bin) embedder weights (trusted only)")
    _option(d, "output", default="dreambooth_eval.json", help="JSON report (default dreambooth_eval.json)")
    _option(d, "save_images", default=None, help="also save the generated images in this folder")
    d.set_defaults(func=_eval_dreambooth)

    r = esub.add_parser("report", help="(re)build a run's report.html from its samples, metrics.jsonl and logs")
    r.add_argument("output_dir", metavar="OUTPUT_DIR", help="the training run's output folder")
    _option(r, "best_by", default=None, help="highlight the best step by clip_i, dino, clip_t or drift")
    _option(r, "samples_dir", default=None, help="validation samples folder (default OUTPUT_DIR/samples)")
    r.set_defaults(func=_eval_report)
