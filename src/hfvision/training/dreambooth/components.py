"""The base model: what it is (cheap checks before heavy work) and its components (loaded once).

A base is a Hub id, a local diffusers folder, a single ``.safetensors``/``.ckpt`` file, or a key of hfvision's
base-model registry (``sd15``, ``sd21``, ``sdxl``, ...). Families are data (`hfvision.models.families`: pipeline
class, components, flow matching or not), not branches spread over the trainer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...models.families import FAMILIES, families_of_pipeline, family_from_unet_config
from ...models.registry import BaseModel
from ...utils.logging import get_logger

logger = get_logger(__name__)

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class ResolvedBaseModel:
    """The base model a training run was given, resolved without loading weights: where it loads from and its
    family. For a registry key it carries the registry's record (``entry``) rather than copies of its fields.

    Attributes:
        name (`str`): what the user passed.
        source (`str`): the Hub id or local path to load from.
        revision (`str`, *optional*): Hub revision.
        family (`str`, *optional*): a key of `hfvision.models.families.FAMILIES` (``"sd1"``, ``"sd2"``, ``"sdxl"``,
            ``"flux"``, ``"sd3"``); `None` for a URL until it is downloaded and loaded.
        kind (`str`): ``"hub"``, ``"dir"``, ``"file"``, ``"url"`` or ``"registry"``.
        prediction_type (`str`, *optional*): from the scheduler config, when known before loading.
        entry (`BaseModel`, *optional*): the registry record, when ``name`` is a registry key.
        quantization ([`~hfvision.training.dreambooth.quantization.QuantizationPlan`], *optional*): load the frozen
            transformer and T5 quantised (``--quantize_base``).
    """

    name: str
    source: str
    revision: str | None
    family: str | None
    kind: str
    prediction_type: str | None = None
    entry: BaseModel | None = None
    quantization: object | None = None

    @property
    def registry_key(self) -> str | None:
        return self.entry.key if self.entry else None

    @property
    def license(self) -> str | None:
        """Licence of the base, when known (registry)."""
        return self.entry.license if self.entry else None


def _unsupported(name: str, what: str) -> ValueError:
    stock = sorted({f.pipeline_class for f in FAMILIES.values()})
    return ValueError(
        f"base model {name!r} is {what}; the DreamBooth trainer supports Stable Diffusion 1.x/2.x/XL, Flux.1 and "
        f"SD3 (pipelines {', '.join(stock)})"
    )


def _family_from_index(name: str, index: Mapping, unet_config: Callable[[], Mapping]) -> str:
    """The family of a pipeline from its ``model_index.json`` content; ``unet_config()`` (read only when needed)
    tells SD 2.x from SD 1.x, which share their pipeline classes."""
    class_name = index.get("_class_name", "?")
    if isinstance(class_name, (list, tuple)) and len(class_name) == 2:  # hfvision's shipped-code pipelines
        class_name = class_name[1]
    candidates = families_of_pipeline(class_name)
    if not candidates and all(k in index for k in ("unet", "vae", "text_encoder", "tokenizer")):
        candidates = ("sdxl",) if "text_encoder_2" in index else ("sd1", "sd2")
        logger.info(
            "base model %s: unknown pipeline %s treated as %s (components match)", name, class_name, candidates
        )
    if len(candidates) > 1:  # a DreamBooth pipeline's folder records its family
        recorded = index.get("family")
        return recorded if recorded in candidates else family_from_unet_config(unet_config())
    if candidates:
        return candidates[0]
    raise _unsupported(name, f"a {class_name}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON: {err}") from None


def resolve_base_model(
    name: str, revision: str | None = None, resolution: int | None = None, force_resolution: bool = False
) -> ResolvedBaseModel:
    """Find out what ``name`` is without loading weights; raise a clear error for anything untrainable.

    Reads only ``model_index.json`` and the scheduler config (a local file or a small Hub download). Registry keys
    also check ``resolution`` against the entry (``force_resolution`` turns that error into a warning).
    """
    from ...models import classify_source, get_base_model, validate_training_resolution

    kind = classify_source(name)
    if kind == "url":
        return ResolvedBaseModel(name, str(name), None, None, kind)  # family known once downloaded and loaded
    if kind == "file":
        from ...conversion import detect_family

        family, prediction = detect_family(Path(name).expanduser())  # reads the header only
        if family not in FAMILIES:
            raise _unsupported(name, f"a {family} checkpoint")
        base = ResolvedBaseModel(name, str(name), None, family, kind, prediction_type=prediction)
        _check_prediction(base)
        return base
    if kind == "directory":
        path = Path(name).expanduser()
        index = _read_json(path / "model_index.json") if (path / "model_index.json").is_file() else None
        if index is None:
            raise ValueError(f"base model folder {path} has no model_index.json (not a diffusers pipeline folder)")
        scheduler_cfg = path / "scheduler" / "scheduler_config.json"
        prediction = _read_json(scheduler_cfg).get("prediction_type") if scheduler_cfg.is_file() else None
        family = _family_from_index(name, index, lambda: _read_json(path / "unet" / "config.json"))
        base = ResolvedBaseModel(name, str(path), revision, family, "dir", prediction_type=prediction)
    elif kind == "registry":
        entry = get_base_model(name)
        if resolution is not None:
            validate_training_resolution(name, resolution, allow_override=force_resolution)
        base = ResolvedBaseModel(
            name,
            entry.repo_id,
            revision or entry.revision,
            entry.family,
            "registry",
            prediction_type=entry.prediction_type,
            entry=entry,
        )
    else:
        base = _resolve_hub(name, revision)
    _check_prediction(base)
    return base


def _resolve_hub(name: str, revision: str | None) -> ResolvedBaseModel:
    from huggingface_hub import hf_hub_download

    def read(filename: str) -> dict:
        return _read_json(Path(hf_hub_download(name, filename, revision=revision)))

    try:
        index = read("model_index.json")
    except Exception as err:  # noqa: BLE001 - offline, missing repo, gated: one clear line
        raise FileNotFoundError(f"base model {name!r}: cannot read model_index.json from the Hub ({err})") from None
    prediction = None
    try:
        prediction = read("scheduler/scheduler_config.json").get("prediction_type")
    except Exception:  # noqa: BLE001 - optional: checked again once loaded
        pass
    family = _family_from_index(name, index, lambda: read("unet/config.json"))
    return ResolvedBaseModel(name, name, revision, family, "hub", prediction_type=prediction)


def _check_prediction(base: ResolvedBaseModel) -> None:
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


def load_base_pipeline(base: ResolvedBaseModel, torch_dtype=None, variant: str | None = None):
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
            index = {"_class_name": type(pipe).__name__, **pipe.components}
            base.family = _family_from_index(base.name, index, lambda: pipe.unet.config)
        base.prediction_type = _prediction_type(base.family, pipe.scheduler)
        _check_prediction(base)
        if type(pipe) is not pipeline_class(base.family):  # hand over the components to the stock class
            pipe = pipeline_class(base.family)(**_stock_components(base.family, pipe.components))
        return pipe
    kwargs = {"revision": base.revision, "variant": variant, "dtype": torch_dtype}
    kwargs.update(quantization_kwargs(base.quantization))  # --quantize_base (Flux/SD3 LoRA on a GPU)
    if FAMILIES[base.family].safety_checker:
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
    if FAMILIES[family].safety_checker:
        out.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return out


def training_noise_scheduler(scheduler, flow: bool = False):
    """A DDPM scheduler with the base's noise schedule and prediction type (used for ``add_noise``/targets); for
    flow-matching bases a fresh copy of their own scheduler (its training sigma table)."""
    from diffusers import DDPMScheduler

    if flow:
        return type(scheduler).from_config(scheduler.config)
    return DDPMScheduler.from_config(scheduler.config)


def flow_facts(base: ResolvedBaseModel) -> dict:
    """What `check_flow_options` needs to know about ``base`` before any weights load: the family (``"sd1"`` when
    not known yet), the T5 limit and whether the transformer has a guidance
    embedding. Read from the registry entry, or from the small config files of a folder or Hub repo."""
    if base.family is None:
        return {"family": "sd1"}
    facts = {"family": base.family, "name": base.name}
    if not FAMILIES[base.family].flow:
        return facts
    if base.entry is not None:
        entry = base.entry
        return {**facts, "sequence_limit": entry.max_sequence_length, "guidance_embeds": entry.guidance_embeds}
    t5_tokenizer = FAMILIES[base.family].tokenizers[-1]
    transformer = _small_json(base, "transformer/config.json") or {}
    tokenizer = _small_json(base, f"{t5_tokenizer}/tokenizer_config.json") or {}
    limit = tokenizer.get("model_max_length")
    limit = 512 if not isinstance(limit, int) or limit > 512 else limit  # the pipelines' own bound is 512
    return {**facts, "sequence_limit": limit, "guidance_embeds": bool(transformer.get("guidance_embeds", False))}


def _small_json(base: ResolvedBaseModel, filename: str) -> dict | None:
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


def load_safety_components(base: ResolvedBaseModel) -> dict:
    """The base's ``safety_checker`` and ``feature_extractor`` when its ``model_index.json`` names them (SD 1.x/2.x
    Hub or folder bases), so the saved pipeline keeps them as diffusers' DreamBooth script does; else ``{}``."""
    if base.family is None or not FAMILIES[base.family].safety_checker or base.kind not in ("hub", "registry", "dir"):
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


def apply_family_options(config, base: ResolvedBaseModel) -> None:
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
