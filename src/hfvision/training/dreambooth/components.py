"""The base model: what it is (cheap checks before heavy work) and its components (loaded once).

A base is a Hub id, a local diffusers folder, a single ``.safetensors``/``.ckpt`` file, or a key of hfvision's
base-model registry (``sd15``, ``sd21``, ``sdxl``, ...). Only UNet-based Stable Diffusion families are trainable
here; families are data (the table below), not branches spread over the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...utils.logging import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class FamilySpec:
    """How a family's pipeline is put together.

    Attributes:
        pipeline_class (`str`): diffusers' stock pipeline class.
        text_encoders, tokenizers (`tuple[str]`): component names, in pipeline order.
        denoiser (`str`): the trained network's component name (``"unet"`` or ``"transformer"``).
        flow (`bool`): flow matching (Flux, SD3) instead of noise prediction.
        trainable_text_encoders (`int`): how many of the first text encoders ``train_text_encoder`` trains (the CLIP
            ones, as diffusers' scripts: the T5 encoder of Flux/SD3 stays frozen).
    """

    pipeline_class: str
    text_encoders: tuple[str, ...]
    tokenizers: tuple[str, ...]
    denoiser: str = "unet"
    flow: bool = False
    trainable_text_encoders: int = 1


FAMILIES = {
    "sd": FamilySpec("StableDiffusionPipeline", ("text_encoder",), ("tokenizer",)),
    "sdxl": FamilySpec(
        "StableDiffusionXLPipeline",
        ("text_encoder", "text_encoder_2"),
        ("tokenizer", "tokenizer_2"),
        trainable_text_encoders=2,
    ),
    "flux": FamilySpec(
        "FluxPipeline", ("text_encoder", "text_encoder_2"), ("tokenizer", "tokenizer_2"), "transformer", True, 1
    ),
    "sd3": FamilySpec(
        "StableDiffusion3Pipeline",
        ("text_encoder", "text_encoder_2", "text_encoder_3"),
        ("tokenizer", "tokenizer_2", "tokenizer_3"),
        "transformer",
        True,
        2,
    ),
}
# model_index.json `_class_name` -> family; anything else is refused with the list below.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "DreamBoothPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "DreamBoothXLPipeline": "sdxl",
    "FluxPipeline": "flux",
    "DreamBoothFluxPipeline": "flux",
    "StableDiffusion3Pipeline": "sd3",
    "DreamBoothSD3Pipeline": "sd3",
}
# registry family names -> trainer family
_REGISTRY_FAMILIES = {
    "sd1": "sd",
    "sd15": "sd",
    "sd2": "sd",
    "sd21": "sd",
    "sd": "sd",
    "sdxl": "sdxl",
    "flux": "flux",
    "sd3": "sd3",
}
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class BaseModel:
    """A resolved base model.

    Attributes:
        name (`str`): what the user passed.
        source (`str`): the Hub id or local path to load from.
        revision (`str`, *optional*): Hub revision.
        family (`str`): ``"sd"`` (SD 1.x/2.x) or ``"sdxl"``.
        kind (`str`): ``"hub"``, ``"dir"``, ``"file"`` or ``"registry"``.
        registry_key (`str`, *optional*): the registry key, when one was used.
        license (`str`, *optional*): licence of the base, when known (registry).
        prediction_type (`str`, *optional*): from the scheduler config, when known before loading.
        quantization ([`~hfvision.training.dreambooth.quantization.QuantizationPlan`], *optional*): load the frozen
            transformer and T5 quantised (``--quantize_base``).
    """

    name: str
    source: str
    revision: str | None
    family: str | None
    kind: str
    registry_key: str | None = None
    license: str | None = None
    prediction_type: str | None = None
    quantization: object | None = None

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self.family]


def _unsupported(name: str, what: str) -> ValueError:
    stock = sorted(k for k in PIPELINE_FAMILIES if not k.startswith("DreamBooth"))
    return ValueError(
        f"base model {name!r} is {what}; the DreamBooth trainer supports Stable Diffusion 1.x/2.x/XL, Flux.1 and "
        f"SD3 (pipelines {', '.join(stock)})"
    )


def _family_from_index(name: str, index: dict) -> str:
    class_name = index.get("_class_name", "?")
    if isinstance(class_name, (list, tuple)) and len(class_name) == 2:  # hfvision's shipped-code pipelines
        class_name = class_name[1]
    if class_name in PIPELINE_FAMILIES:
        return PIPELINE_FAMILIES[class_name]
    if all(k in index for k in ("unet", "vae", "text_encoder", "tokenizer")):
        family = "sdxl" if "text_encoder_2" in index else "sd"
        logger.info("base model %s: unknown pipeline %s treated as %s (components match)", name, class_name, family)
        return family
    raise _unsupported(name, f"a {class_name}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON: {err}") from None


def resolve_base_model(
    name: str, revision: str | None = None, resolution: int | None = None, force_resolution: bool = False
) -> BaseModel:
    """Find out what ``name`` is without loading weights; raise a clear error for anything untrainable.

    Reads only ``model_index.json`` and the scheduler config (a local file or a small Hub download). Registry keys
    also check ``resolution`` against the entry (``force_resolution`` turns that error into a warning).
    """
    from ...models import classify_source, get_base_model, validate_training_resolution

    kind = classify_source(name)
    if kind == "url":
        return BaseModel(name, str(name), None, None, kind)  # family known once downloaded and loaded
    if kind == "file":
        from ...conversion import detect_family

        family, prediction = detect_family(Path(name).expanduser())  # reads the header only
        if family not in _REGISTRY_FAMILIES:
            raise _unsupported(name, f"a {family} checkpoint")
        base = BaseModel(name, str(name), None, _REGISTRY_FAMILIES[family], kind, prediction_type=prediction)
        _check_prediction(base)
        return base
    if kind == "directory":
        path = Path(name).expanduser()
        index = _read_json(path / "model_index.json") if (path / "model_index.json").is_file() else None
        if index is None:
            raise ValueError(f"base model folder {path} has no model_index.json (not a diffusers pipeline folder)")
        scheduler_cfg = path / "scheduler" / "scheduler_config.json"
        prediction = _read_json(scheduler_cfg).get("prediction_type") if scheduler_cfg.is_file() else None
        base = BaseModel(name, str(path), revision, _family_from_index(name, index), "dir", prediction_type=prediction)
    elif kind == "registry":
        entry = get_base_model(name)
        family = _REGISTRY_FAMILIES.get(entry.family)
        if family is None:
            raise _unsupported(name, f"a {entry.family} model ({entry.pipeline_class})")
        if resolution is not None:
            validate_training_resolution(name, resolution, allow_override=force_resolution)
        base = BaseModel(
            name,
            entry.repo_id,
            revision or entry.revision,
            family,
            "registry",
            registry_key=name,
            license=entry.license,
            prediction_type=entry.prediction_type,
        )
    else:
        base = _resolve_hub(name, revision)
    _check_prediction(base)
    return base


def _resolve_hub(name: str, revision: str | None) -> BaseModel:
    from huggingface_hub import hf_hub_download

    try:
        index = _read_json(Path(hf_hub_download(name, "model_index.json", revision=revision)))
    except Exception as err:  # noqa: BLE001 - offline, missing repo, gated: one clear line
        raise FileNotFoundError(f"base model {name!r}: cannot read model_index.json from the Hub ({err})") from None
    prediction = None
    try:
        cfg = hf_hub_download(name, "scheduler/scheduler_config.json", revision=revision)
        prediction = _read_json(Path(cfg)).get("prediction_type")
    except Exception:  # noqa: BLE001 - optional: checked again once loaded
        pass
    return BaseModel(name, name, revision, _family_from_index(name, index), "hub", prediction_type=prediction)


def _check_prediction(base: BaseModel) -> None:
    if base.family is not None and FAMILIES[base.family].flow:
        base.prediction_type = None  # flow matching: the velocity (the registry says "flow_matching")
        return
    if base.prediction_type is not None and base.prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"base model {base.name!r} predicts {base.prediction_type!r}; the trainer supports {PREDICTION_TYPES}"
        )


def pipeline_class(family: str):
    import diffusers

    return getattr(diffusers, FAMILIES[family].pipeline_class)


def load_base_pipeline(base: BaseModel, torch_dtype=None, variant: str | None = None):
    """Load the base as diffusers' stock pipeline of its family (no safety checker: the trainer never needs it).

    Single files go through :func:`hfvision.models.load_pipeline` (offline configs, safe ``.ckpt`` loading).
    """
    import torch

    from .quantization import quantization_kwargs

    torch_dtype = torch_dtype or torch.float32
    if base.kind in ("file", "url"):
        from ...models import load_pipeline

        pipe = load_pipeline(base.source, torch_dtype=torch_dtype)
        if base.family is None:
            base.family = _family_from_index(base.name, {"_class_name": type(pipe).__name__, **pipe.components})
        base.prediction_type = _prediction_type(base.family, pipe.scheduler)
        _check_prediction(base)
        if type(pipe) is not pipeline_class(base.family):  # hand over the components to the stock class
            pipe = pipeline_class(base.family)(**_stock_components(base.family, pipe.components))
        return pipe
    kwargs = {"revision": base.revision, "variant": variant, "dtype": torch_dtype}
    kwargs.update(quantization_kwargs(base.quantization))  # --quantize_base (Flux/SD3 LoRA on a GPU)
    if base.family == "sd":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = pipeline_class(base.family).from_pretrained(base.source, **kwargs)
    base.prediction_type = _prediction_type(base.family, pipe.scheduler)
    _check_prediction(base)
    return pipe


def _prediction_type(family: str, scheduler) -> str | None:
    if FAMILIES[family].flow:  # flow matching: the velocity, no prediction_type in the scheduler config
        return None
    return scheduler.config.get("prediction_type", "epsilon")


def _stock_components(family: str, components: dict) -> dict:
    names = [
        "vae",
        FAMILIES[family].denoiser,
        "scheduler",
        *FAMILIES[family].text_encoders,
        *FAMILIES[family].tokenizers,
    ]
    out = {n: components[n] for n in names}
    if family == "sd":
        out.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return out


def training_noise_scheduler(scheduler, flow: bool = False):
    """A DDPM scheduler with the base's noise schedule and prediction type (used for ``add_noise``/targets); for
    flow-matching bases a fresh copy of their own scheduler (its training sigma table)."""
    from diffusers import DDPMScheduler

    if flow:
        return type(scheduler).from_config(scheduler.config)
    return DDPMScheduler.from_config(scheduler.config)


def flow_facts(base: BaseModel) -> dict:
    """What `check_flow_options` needs to know about ``base`` before any weights load: the registry family
    (``"sd1"``, ``"sdxl"``, ``"flux"``, ``"sd3"``), the T5 limit and whether the transformer has a guidance
    embedding. Read from the registry entry, or from the small config files of a folder or Hub repo."""
    if base.family is None:
        return {"family": "sd1"}
    registry_family = {"sd": "sd1", "sdxl": "sdxl", "flux": "flux", "sd3": "sd3"}[base.family]
    facts = {"family": registry_family, "name": base.name}
    if not FAMILIES[base.family].flow:
        return facts
    if base.kind == "registry":
        from ...models import get_base_model

        entry = get_base_model(base.registry_key)
        return {**facts, "sequence_limit": entry.max_sequence_length, "guidance_embeds": entry.guidance_embeds}
    t5_tokenizer = FAMILIES[base.family].tokenizers[-1]
    transformer = _small_json(base, "transformer/config.json") or {}
    tokenizer = _small_json(base, f"{t5_tokenizer}/tokenizer_config.json") or {}
    limit = tokenizer.get("model_max_length")
    limit = 512 if not isinstance(limit, int) or limit > 512 else limit  # the pipelines' own bound is 512
    return {**facts, "sequence_limit": limit, "guidance_embeds": bool(transformer.get("guidance_embeds", False))}


def _small_json(base: BaseModel, filename: str) -> dict | None:
    if base.kind == "dir":
        path = Path(base.source) / filename
        return _read_json(path) if path.is_file() else None
    if base.kind == "hub":
        from huggingface_hub import hf_hub_download

        try:
            return _read_json(Path(hf_hub_download(base.source, filename, revision=base.revision)))
        except Exception:  # noqa: BLE001 - optional: the pipelines check again once loaded
            return None
    return None


def load_safety_components(base: BaseModel) -> dict:
    """The base's ``safety_checker`` and ``feature_extractor`` when its ``model_index.json`` names them (SD 1.x/2.x
    Hub or folder bases), so the saved pipeline keeps them as diffusers' DreamBooth script does; else ``{}``."""
    if base.family != "sd" or base.kind not in ("hub", "registry", "dir"):
        return {}
    if base.kind == "dir":
        index = _read_json(Path(base.source) / "model_index.json")
    else:
        from huggingface_hub import hf_hub_download

        index = _read_json(Path(hf_hub_download(base.source, "model_index.json", revision=base.revision)))
    entry = index.get("safety_checker")
    if not (isinstance(entry, list) and entry and entry[0] is not None):
        return {}
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    kwargs = {"revision": base.revision} if base.kind != "dir" else {}
    return {
        "safety_checker": StableDiffusionSafetyChecker.from_pretrained(
            base.source, subfolder="safety_checker", **kwargs
        ),
        "feature_extractor": CLIPImageProcessor.from_pretrained(base.source, subfolder="feature_extractor", **kwargs),
    }


# diffusers' script defaults for the flow families (train_dreambooth_lora_flux.py / train_dreambooth_flux.py /
# train_dreambooth*_sd3.py): T5 prompt length (LoRA-Flux 512, full Flux and SD3 77), weighting, guidance.
_FLOW_DEFAULTS = {
    "flux": {"weighting_scheme": "none", "guidance_scale": 3.5},
    "sd3": {"weighting_scheme": "logit_normal"},
}


def apply_family_options(config, base: BaseModel) -> None:
    """Check ``config``'s family-specific options against ``base`` (one-line errors, before any weights load) and
    fill the flow families' defaults that depend on the family: ``weighting_scheme``, ``guidance_scale`` (Flux.1-dev
    only) and ``max_sequence_length`` (capped at the model's T5 limit)."""
    from .buckets import bucket_options
    from .flow_matching import check_flow_options
    from .quantization import check_quantization

    facts = flow_facts(base)
    flow = base.family is not None and FAMILIES[base.family].flow
    if config.precondition_outputs and base.family != "sd3":
        raise ValueError(f"--precondition_outputs applies to SD3 only; {base.name} is {facts['family']} (drop it)")
    if config.output_kohya_format and (base.family == "sd3" or (flow and config.use_dora)):
        what = "SD3 LoRAs (no kohya layout for SD3)" if base.family == "sd3" else "Flux DoRA (kohya-Flux has no DoRA)"
        raise ValueError(f"--output_kohya_format is not available for {what}; drop it (the diffusers file loads)")
    base.quantization = check_quantization(config, base)  # --quantize_base: one line before any weights load
    if not flow and (config.lora_layers or config.lora_blocks):
        raise ValueError(f"--lora_layers / --lora_blocks apply to Flux/SD3 transformers; {base.name} is a UNet model")
    check_flow_options(
        facts.pop("family"),
        resolution=config.resolution,
        max_sequence_length=config.max_sequence_length,
        guidance_scale=config.guidance_scale,
        snr_gamma=config.snr_gamma,
        offset_noise=config.noise_offset,
        weighting_scheme=config.weighting_scheme,
        **facts,
        **bucket_options(config),  # bucket sides: multiples of the family's factor (16 for Flux/SD3)
    )
    if not flow:
        return
    defaults = _FLOW_DEFAULTS[base.family]
    if config.weighting_scheme is None:
        config.weighting_scheme = defaults["weighting_scheme"]
    if config.guidance_scale is None and facts.get("guidance_embeds"):
        config.guidance_scale = defaults.get("guidance_scale")
    if config.max_sequence_length is None:
        wanted = 512 if base.family == "flux" and config.use_lora else 77
        config.max_sequence_length = min(wanted, facts.get("sequence_limit") or wanted)
