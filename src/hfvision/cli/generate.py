"""``hfvision generate``: text-to-image from any model source; ``hfvision models list``: the registries."""

from __future__ import annotations

import argparse
import json
import time


def _generate(args: argparse.Namespace) -> int:
    import torch

    from ..models import load_controlnet, load_pipeline
    from ..pipelines.dreambooth import DreamBoothPipeline, infer_family
    from ..pipelines.dreambooth_xl import DreamBoothXLPipeline
    from ..utils.io import atomic_write

    suffix = args.out.rsplit(".", 1)[-1].lower() if "." in args.out else ""
    if suffix not in ("png", "jpg", "jpeg", "webp"):
        raise ValueError(f"--out {args.out!r} must end in .png, .jpg or .webp")
    if args.control_image and not args.controlnet:
        raise ValueError("--control-image needs --controlnet (a registered name like 'canny', a directory or Hub id)")
    start = time.perf_counter()
    pipe = load_pipeline(args.model, base=args.base, revision=args.revision)
    if getattr(pipe, "unet", None) is None:  # e.g. Flux: no DreamBooth conveniences, run as is
        if args.controlnet or "{" in args.prompt:
            raise ValueError(f"{type(pipe).__name__} supports neither --controlnet nor {{token}} placeholders here")
        call_kwargs = {}
    else:
        cls = DreamBoothXLPipeline if infer_family(pipe.unet) == "sdxl" else DreamBoothPipeline
        overrides = {}
        if args.controlnet:
            overrides["controlnet"] = load_controlnet(args.controlnet, base=pipe)
        pipe = cls.from_components(pipe, instance_token=args.token, class_noun=args.class_noun, **overrides)
        call_kwargs = {"negative_prompt": args.negative_prompt}
        if args.controlnet:
            if not args.control_image:
                raise ValueError("--controlnet needs --control-image PATH")
            from ..data import load_image

            control = load_image(args.control_image)
            if args.preprocess == "canny":
                from ..pipelines.controlnet_utils import canny_image

                control = canny_image(control, args.canny_low, args.canny_high)
            if args.save_control:
                control.save(args.save_control)
            call_kwargs.update(control_image=control, controlnet_conditioning_scale=args.controlnet_scale)
    loaded = time.perf_counter() - start
    if args.height or args.width:
        call_kwargs.update(height=args.height, width=args.width)
    start = time.perf_counter()
    result = pipe(
        args.prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        generator=torch.Generator().manual_seed(args.seed),
        **call_kwargs,
    )
    image = result.images[0]
    with atomic_write(args.out, "wb") as f:
        image.save(f, format={"jpg": "JPEG"}.get(suffix, suffix.upper()))
    print(
        f"wrote {args.out} ({image.width}x{image.height}; load {loaded:.1f} s, generate {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from ..models import BASE_MODELS, CONTROLNETS
    from ..models.controlnets import resolve_family

    if args.controlnets:
        entries = CONTROLNETS[resolve_family(args.controlnets)]
        rows = [{"name": e.name, "repo_id": e.repo_id, "preprocessor": e.preprocessor, "pipeline": e.pipeline_class}
                for e in sorted(entries.values(), key=lambda e: e.name)]  # fmt: skip
    else:
        rows = [{"key": m.key, "family": m.family, "resolution": m.resolution, "prediction": m.prediction_type,
                 "repo_id": m.repo_id, "revision": m.revision[:12], "license": m.license} for m in BASE_MODELS.values()]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate an image from a registry key, directory, single file, URL or Hub id")
    p.add_argument(
        "--model", required=True, help="registry key (sd15, sdxl, ...), directory, .safetensors, URL, Hub id"
    )
    p.add_argument("--prompt", required=True, help="text prompt; {token} and {class} expand to the trained subject")
    p.add_argument("--out", required=True, help="output image (.png or .jpg), written atomically")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=None, help="pixels, multiple of 8 (default: the model's)")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--token", default=None, help="instance token {token} expands to (saved DreamBooth models know it)")
    p.add_argument("--class-noun", default=None, help="class noun {class} expands to")
    p.add_argument("--base", default=None, help="registry key for single files whose family is ambiguous")
    p.add_argument("--revision", default=None, help="Hub revision")
    p.add_argument("--controlnet", default=None, help="registered name (see `hfvision models list --controlnets`)")
    p.add_argument("--control-image", default=None, help="condition image (preprocessed with --preprocess)")
    p.add_argument("--preprocess", choices=["canny", "none"], default="canny")
    p.add_argument("--canny-low", type=int, default=100)
    p.add_argument("--canny-high", type=int, default=200)
    p.add_argument("--controlnet-scale", type=float, default=1.0)
    p.add_argument("--save-control", default=None, help="also save the preprocessed condition image here")
    p.set_defaults(func=_generate)

    m = sub.add_parser("models", help="list the registered base models and ControlNets")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="base models, or the ControlNets of one base with --controlnets BASE")
    ls.add_argument("--controlnets", metavar="BASE", default=None, help="registry key or family, e.g. sd15")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_models_list)
