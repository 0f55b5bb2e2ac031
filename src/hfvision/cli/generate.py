"""``hfvision generate``: text-to-image from any model source; ``hfvision models list``: the registries."""

from __future__ import annotations

import argparse
import json
import time

from ._checks import USAGE, CLIError, non_negative_float, non_negative_int, pixel_size, positive_int

SUFFIXES = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
# per model kind: (steps, guidance scale, longest T5 prompt) when the flags are left out. Flux.1-dev takes its
# guidance as an embedding (distilled, one pass per step); schnell is timestep-distilled to 1-4 steps without guidance
# and 256 T5 tokens; SD3 keeps classifier-free guidance (diffusers' defaults: 28 steps, 7.0). The UNet families: 30, 7.5.
FLOW_DEFAULTS = {"flux-dev": (28, 3.5, 512), "flux-schnell": (4, 0.0, 256), "sd3": (28, 7.0, 256)}
FLOW_MAX_SEQUENCE = {"flux-dev": 512, "flux-schnell": 256, "sd3": 512}
UNET_DEFAULTS = (30, 7.5)
FLOW_SIZE_FACTOR = 16  # VAE downsampling 8 x the transformer's 2x2 patch (Flux's latent packing)


def _flow_variant(model: str) -> str | None:
    """``"flux-dev"``, ``"flux-schnell"`` or ``"sd3"`` for a registry key or local pipeline folder of those
    families, from the registry or ``transformer/config.json`` (nothing loads); `None` otherwise or unknown here."""
    from pathlib import Path

    from ..models.registry import BASE_MODELS

    if model in BASE_MODELS:
        entry = BASE_MODELS[model]
        if entry.family == "flux":
            return "flux-dev" if entry.guidance_embeds else "flux-schnell"
        return "sd3" if entry.family == "sd3" else None
    config_file = Path(model).expanduser() / "transformer" / "config.json"
    if not config_file.is_file():
        return None
    return _variant_of(json.loads(config_file.read_text(encoding="utf-8")))


def _variant_of(config) -> str | None:
    """The kind of a transformer config (a dict or a diffusers ``FrozenDict``)."""
    name = config.get("_class_name")
    if name == "FluxTransformer2DModel":
        return "flux-dev" if config.get("guidance_embeds") else "flux-schnell"
    return "sd3" if name == "SD3Transformer2DModel" else None


def _check_flow(args: argparse.Namespace, variant: str) -> None:
    """Flags that do not fit a Flux.1 / SD3 model, before its weights load."""
    if variant == "sd3" and (args.controlnet or args.control_image):
        flag = "--controlnet" if args.controlnet else "--control-image"
        raise CLIError(
            f"{flag}: SD3 models have no ControlNet here (SD 1.x/2.x/SDXL, Flux.1 only); leave it out", USAGE
        )
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value % FLOW_SIZE_FACTOR:
            fixed = max(FLOW_SIZE_FACTOR, round(value / FLOW_SIZE_FACTOR) * FLOW_SIZE_FACTOR)
            raise CLIError(
                f"{flag} {value} must be a multiple of {FLOW_SIZE_FACTOR} for {variant}, e.g. {fixed}", USAGE
            )
    if variant == "flux-schnell" and args.guidance_scale:
        raise CLIError(
            f"--guidance-scale {args.guidance_scale}: FLUX.1-schnell has no guidance (it is timestep-distilled); "
            "leave the flag out",
            USAGE,
        )
    if args.true_cfg_scale is not None and not variant.startswith("flux"):
        raise CLIError("--true-cfg-scale is for Flux.1 models; SD3 uses --guidance-scale for the same", USAGE)
    true_cfg = (args.true_cfg_scale or 1.0) > 1.0
    if variant.startswith("flux") and args.negative_prompt and not true_cfg:
        raise CLIError(
            "--negative-prompt: Flux.1 runs without classifier-free guidance, so it would be ignored; add "
            "--true-cfg-scale N (N > 1, two passes per step) to apply it",
            USAGE,
        )
    limit = FLOW_MAX_SEQUENCE[variant]
    if args.max_sequence_length is not None and args.max_sequence_length > limit:
        raise CLIError(
            f"--max-sequence-length {args.max_sequence_length} is over {variant}'s {limit} T5 tokens", USAGE
        )


def _check_placeholders(args: argparse.Namespace) -> None:
    """``{token}`` / ``{class}`` need a value: the flag, or (for local folders) the one the saved pipeline stores."""
    from pathlib import Path

    from ..models.registry import BASE_MODELS

    index_file = Path(args.model).expanduser() / "model_index.json"
    if args.model in BASE_MODELS:
        stored = {}
    elif index_file.is_file():
        stored = json.loads(index_file.read_text(encoding="utf-8"))
    else:
        return  # a Hub repo or single file: the pipeline itself reports a missing value
    prompts = f"{args.prompt} {args.negative_prompt or ''}"
    for placeholder, flag, key in (
        ("{token}", "--token", "instance_token"),
        ("{class}", "--class-noun", "class_noun"),
    ):
        if placeholder in prompts and not getattr(args, key.replace("instance_", "")) and not stored.get(key):
            raise CLIError(f"the prompt uses {placeholder} but {args.model} stores no {key}; pass {flag} WORD", USAGE)


def _check_unet_flags(args: argparse.Namespace) -> None:
    for flag, value in (
        ("--true-cfg-scale", args.true_cfg_scale),
        ("--max-sequence-length", args.max_sequence_length),
    ):
        if value is not None:
            raise CLIError(f"{flag} is for Flux.1/SD3 models; {args.model} is not one", USAGE)


def _check(args: argparse.Namespace) -> None:
    """Every argument before any model loads: output name, flag combinations, input files, the model source."""
    from . import _checks

    suffix = args.out.rsplit(".", 1)[-1].lower() if "." in args.out else ""
    if suffix not in SUFFIXES:
        raise CLIError(f"--out {args.out} must end in .png, .jpg or .webp", USAGE)
    variant = _flow_variant(args.model)
    if variant is not None:
        _check_flow(args, variant)
    elif _family(args.model) is not None:
        _check_unet_flags(args)
    _check_placeholders(args)
    if args.control_image and not args.controlnet:
        raise CLIError(
            "--control-image needs --controlnet (a registered name like 'canny', a folder or Hub id)", USAGE
        )
    if args.controlnet and not args.control_image:
        raise CLIError("--controlnet needs --control-image PATH (the condition image)", USAGE)
    _checks.output_file(args.out, "--out", args.overwrite)
    if args.save_control:
        if args.save_control.rsplit(".", 1)[-1].lower() not in SUFFIXES:
            raise CLIError(f"--save-control {args.save_control} must end in .png, .jpg or .webp", USAGE)
        _checks.output_file(args.save_control, "--save-control", args.overwrite)
    if args.control_image:
        from ..data import ImageLoadError, load_image

        _checks.existing(args.control_image, "--control-image", "file")
        try:
            load_image(args.control_image)
        except ImageLoadError as err:
            raise CLIError(f"--control-image {err}") from None
    _checks.model_source(args.model, "--model", "diffusers", revision=args.revision)
    if args.controlnet:
        _check_controlnet(args.controlnet, args.model)


def _family(model: str) -> str | None:
    """The base family of ``--model`` from its files or registry key, without loading it (None if unknown here)."""
    from pathlib import Path

    from ..models.registry import BASE_MODELS

    if model in BASE_MODELS:
        return BASE_MODELS[model].family
    variant = _flow_variant(model)
    if variant is not None:
        return "sd3" if variant == "sd3" else "flux"
    unet_config = Path(model).expanduser() / "unet" / "config.json"
    if not unet_config.is_file():
        return None
    config = json.loads(unet_config.read_text(encoding="utf-8"))
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("use_linear_projection") else "sd1"


def _check_controlnet(value: str, model: str) -> None:
    from pathlib import Path

    from . import _checks

    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CLIError(f"--controlnet {value} is not a ControlNet folder (no config.json)")
        name = str(json.loads((path / "config.json").read_text(encoding="utf-8")).get("_class_name", ""))
        family = _family(model)
        if family is not None and (family == "flux") != name.startswith("Flux"):
            kind = "a Flux.1" if family == "flux" else f"an {family.upper()}" if family == "sd1" else f"a {family}"
            raise CLIError(f"--controlnet {value} is a {name or 'ControlNet'}, which does not fit {kind} model", USAGE)
        _checks._weights_in(path, False, "--controlnet")
    elif path.is_file():
        raise CLIError(f"--controlnet {value} is a file; give a ControlNet folder, a registered name or a Hub id")
    elif _checks.looks_like_path(value):
        raise CLIError(f"--controlnet {value}: no such folder")
    elif "/" in value:
        _checks.check_hub_model(value, "--controlnet", "config.json")
    elif _family(model) is not None:  # a registered name: its Hub repo must be reachable (or cached)
        from ..models.controlnets import get_controlnet

        try:
            entry = get_controlnet(value, _family(model))
        except ValueError as err:
            raise CLIError(f"--controlnet: {err}", USAGE) from None
        _checks.check_hub_model(
            entry.repo_id, "--controlnet", "config.json", entry.revision, shown=f"{value} ({entry.repo_id})"
        )


def _generate(args: argparse.Namespace) -> int:
    import torch

    from ..models import load_controlnet, load_pipeline
    from ..pipelines.dreambooth import DreamBoothPipeline, infer_family
    from ..pipelines.dreambooth_xl import DreamBoothXLPipeline
    from ..utils.io import atomic_write

    suffix = args.out.rsplit(".", 1)[-1].lower()
    start = time.perf_counter()
    pipe = load_pipeline(args.model, base=args.base, revision=args.revision)
    prompt = args.prompt
    variant = _variant_of(pipe.transformer.config) if getattr(pipe, "transformer", None) is not None else None
    steps, guidance = UNET_DEFAULTS
    if variant is not None:  # Flux.1 / SD3: hfvision's DreamBooth subclass ({token}, stored instance token)
        from ..pipelines.dreambooth_flux import DreamBoothFluxPipeline
        from ..pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline

        _check_flow(args, variant)  # again: a Hub repo's kind is only known now
        cls = DreamBoothSD3Pipeline if variant == "sd3" else DreamBoothFluxPipeline
        pipe = cls.from_components(pipe, instance_token=args.token, class_noun=args.class_noun)
        steps, guidance, max_sequence_length = FLOW_DEFAULTS[variant]
        call_kwargs = {"max_sequence_length": args.max_sequence_length or max_sequence_length}
        if args.negative_prompt:
            call_kwargs["negative_prompt"] = args.negative_prompt
        if args.true_cfg_scale is not None:
            call_kwargs["true_cfg_scale"] = args.true_cfg_scale
        if args.controlnet:  # diffusers' FluxControlNetPipeline on the same modules; prompts expanded here
            prompt, negative = pipe.expand_prompt(args.prompt), pipe.expand_prompt(args.negative_prompt)
            pipe = _flux_controlnet_pipeline(pipe, args.controlnet)
            if negative:
                call_kwargs["negative_prompt"] = negative
            call_kwargs.update(_control_kwargs(args))
    elif getattr(pipe, "unet", None) is None:
        raise CLIError(f"{type(pipe).__name__} is neither a Stable Diffusion, Flux.1 nor SD3 pipeline")
    else:
        _check_unet_flags(args)
        cls = DreamBoothXLPipeline if infer_family(pipe.unet) == "sdxl" else DreamBoothPipeline
        overrides = {}
        if args.controlnet:
            overrides["controlnet"] = load_controlnet(args.controlnet, base=pipe)
        pipe = cls.from_components(pipe, instance_token=args.token, class_noun=args.class_noun, **overrides)
        call_kwargs = {"negative_prompt": args.negative_prompt}
        if args.controlnet:
            call_kwargs.update(_control_kwargs(args))
    loaded = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=None)  # one bar for the denoising loop, on terminals only
    if args.height or args.width:
        call_kwargs.update(height=args.height, width=args.width)
    start = time.perf_counter()
    result = pipe(
        prompt,
        num_inference_steps=args.steps or steps,
        guidance_scale=guidance if args.guidance_scale is None else args.guidance_scale,
        generator=torch.Generator().manual_seed(args.seed),
        **call_kwargs,
    )
    image = result.images[0]
    with atomic_write(args.out, "wb") as f:
        image.save(f, format=SUFFIXES[suffix])
    print(
        f"wrote {args.out} ({image.width}x{image.height}; load {loaded:.1f} s, generate {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _control_kwargs(args: argparse.Namespace) -> dict:
    """The condition image (preprocessed, saved with --save-control) and its scale, as pipeline arguments."""
    from ..data import load_image
    from ..utils.io import atomic_write

    control = load_image(args.control_image)
    if args.preprocess == "canny":
        from ..pipelines.controlnet_utils import canny_image

        control = canny_image(control, args.canny_low, args.canny_high)
    if args.save_control:
        with atomic_write(args.save_control, "wb") as f:
            control.save(f, format=SUFFIXES[args.save_control.rsplit(".", 1)[-1].lower()])
    return {"control_image": control, "controlnet_conditioning_scale": args.controlnet_scale}


def _flux_controlnet_pipeline(pipe, value: str):
    """diffusers' `FluxControlNetPipeline` sharing ``pipe``'s modules, with the ControlNet ``value`` names (a folder,
    a Hub id or a registered name)."""
    import inspect
    from pathlib import Path

    from diffusers import FluxControlNetModel, FluxControlNetPipeline

    path = Path(value).expanduser()
    if path.is_dir() or "/" in value:
        controlnet = FluxControlNetModel.from_pretrained(str(path) if path.is_dir() else value)
    else:
        from ..models.controlnets import get_controlnet

        entry = get_controlnet(value, "flux")
        controlnet = FluxControlNetModel.from_pretrained(entry.repo_id, revision=entry.revision)
    accepted = set(inspect.signature(FluxControlNetPipeline.__init__).parameters)
    components = {k: v for k, v in pipe.components.items() if k in accepted}
    return FluxControlNetPipeline(**components, controlnet=controlnet.to(pipe.transformer.dtype))


def _check_models_list(args: argparse.Namespace) -> None:
    if args.controlnets:
        from ..models.controlnets import resolve_family

        try:
            resolve_family(args.controlnets)
        except (KeyError, ValueError) as err:
            raise CLIError(f"--controlnets {args.controlnets}: {str(err).strip(chr(39))}", USAGE) from None


def _models_list(args: argparse.Namespace) -> int:
    from ..models import BASE_MODELS, CONTROLNETS
    from ..models.controlnets import resolve_family

    if args.controlnets:
        entries = CONTROLNETS[resolve_family(args.controlnets)]
        rows = [
            {"name": e.name, "repo_id": e.repo_id, "preprocessor": e.preprocessor, "pipeline": e.pipeline_class}
            for e in sorted(entries.values(), key=lambda e: e.name)
        ]
    else:
        rows = [
            {
                "key": m.key,
                "family": m.family,
                "resolution": m.resolution,
                "prediction": m.prediction_type,
                "repo_id": m.repo_id,
                "revision": m.revision[:12],
                "license": m.license,
            }
            for m in BASE_MODELS.values()
        ]
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
    p.add_argument("--out", required=True, help="output image (.png, .jpg or .webp), written atomically")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (and --save-control) file")
    p.add_argument("--negative-prompt", default=None, help="what the image should not show")
    p.add_argument(
        "--steps", type=positive_int, default=None, help="denoising steps (default: 30; Flux-dev/SD3 28, schnell 4)"
    )
    p.add_argument(
        "--guidance-scale",
        type=non_negative_float,
        default=None,
        help="guidance scale (default: 7.5; Flux-dev 3.5 (embedded), SD3 7.0; schnell has none)",
    )
    p.add_argument(
        "--true-cfg-scale",
        type=non_negative_float,
        default=None,
        help="Flux.1: real classifier-free guidance with --negative-prompt when > 1 (two passes per step)",
    )
    p.add_argument(
        "--max-sequence-length",
        type=positive_int,
        default=None,
        help="Flux.1/SD3: T5 prompt tokens (default: schnell 256, dev 512, SD3 256)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same image)")
    p.add_argument(
        "--height", type=pixel_size, default=None, help="pixels, multiple of 8 (16 for Flux/SD3; default: the model's)"
    )
    p.add_argument(
        "--width", type=pixel_size, default=None, help="pixels, multiple of 8 (16 for Flux/SD3; default: the model's)"
    )
    p.add_argument("--token", default=None, help="instance token {token} expands to (saved DreamBooth models know it)")
    p.add_argument("--class-noun", default=None, help="class noun {class} expands to")
    p.add_argument("--base", default=None, help="registry key for single files whose family is ambiguous")
    p.add_argument("--revision", default=None, help="Hub revision")
    p.add_argument("--controlnet", default=None, help="registered name (see `hfvision models list --controlnets`)")
    p.add_argument("--control-image", default=None, help="condition image (preprocessed with --preprocess)")
    p.add_argument(
        "--preprocess",
        choices=["canny", "none"],
        default="canny",
        help="how to turn --control-image into the condition ('none': it already is one)",
    )
    p.add_argument("--canny-low", type=non_negative_int, default=100, help="canny: lower edge threshold")
    p.add_argument("--canny-high", type=non_negative_int, default=200, help="canny: upper edge threshold")
    p.add_argument("--controlnet-scale", type=non_negative_float, default=1.0, help="strength of the ControlNet")
    p.add_argument("--save-control", default=None, help="also save the preprocessed condition image here")
    p.set_defaults(func=_generate, check=_check)

    m = sub.add_parser("models", help="list the registered base models and ControlNets")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="base models, or the ControlNets of one base with --controlnets BASE")
    ls.add_argument("--controlnets", metavar="BASE", default=None, help="registry key or family, e.g. sd15")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_models_list, check=_check_models_list)
