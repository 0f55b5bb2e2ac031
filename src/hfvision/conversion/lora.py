"""LoRA files: diffusers/PEFT layout <-> kohya/AUTOMATIC1111 layout, with ModelSpec metadata.

diffusers layout (``pytorch_lora_weights.safetensors``): ``unet.<module>.lora.down/up.weight``,
``text_encoder[_2].<module>.lora_linear_layer.down/up.weight``, ``<module>.lora_magnitude_vector`` for DoRA, and the
PEFT adapter configs (rank, alpha, targets) as JSON in the header under ``lora_adapter_metadata``.

kohya layout (what AUTOMATIC1111, ComfyUI and kohya's tools load): ``lora_unet_<module_with_underscores>``,
``lora_te_<...>`` (SD 1.x/2.x) or ``lora_te1_``/``lora_te2_`` (SDXL) with ``.lora_down.weight``,
``.lora_up.weight`` and a scalar ``.alpha`` per module (scale = alpha / rank). Text-encoder modules are named
``text_model_encoder_...`` as in the original CLIP checkpoints. DoRA magnitudes are written as ``.dora_scale``, one
per output feature (shape ``(out, 1)``): PEFT's magnitudes unchanged, so the file converts back exactly. Readers
differ on DoRA in this layout: diffusers' ``load_lora_weights`` drops ``dora_scale`` (plain LoRA result), and ComfyUI's
output-axis branch divides by the norm of the base weight where PEFT divides by the norm of the adapted weight, so
only the diffusers file reproduces a DoRA model exactly.

Flux.1 LoRAs (``transformer.*`` keys) are written in the kohya-Flux layout ComfyUI loads
(``lora_unet_double_blocks_*``/``lora_unet_single_blocks_*``, CLIP as ``lora_te1_*``): see
:mod:`hfvision.conversion.lora_flux`.

The key renaming is diffusers' own (``convert_state_dict_to_kohya`` one way, the kohya reader behind
``load_lora_weights`` the other way); this module adds what those leave out: the real per-module alphas (diffusers'
converter writes alpha = rank, which changes the strength of any LoRA trained with another alpha), the SD 1.x
``lora_te_`` prefix, DoRA magnitudes, and the adapter config on the way back.

>>> from hfvision.conversion.lora import convert_lora
>>> convert_lora("out/pytorch_lora_weights.safetensors", "my_lora.safetensors", to="kohya")
PosixPath('my_lora.safetensors')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..utils.logging import get_logger
from .lora_scaling import MAGNITUDE, lora_config_fields, module_scaling
from .modelspec import guess_family, lora_modelspec  # noqa: F401  (re-exported: the public home was here)

logger = get_logger(__name__)

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
KOHYA_WEIGHTS_NAME = "pytorch_lora_weights_kohya.safetensors"
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' header key for the PEFT adapter configs
# the same JSON in kohya files: diffusers refuses a kohya file (it carries alphas) that also has ADAPTER_METADATA_KEY
KOHYA_ADAPTER_METADATA_KEY = "hfvision.lora_adapter_metadata"
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_TEXT_MODEL = "text_model."
# whether each text encoder's modules sit under `text_model.` in transformers (>= 5): CLIPTextModel (SD's encoder,
# SDXL's first) has no such level, CLIPTextModelWithProjection (SDXL's second) keeps it. kohya names always have it.
NATIVE_TEXT_MODEL_LEVEL = {"text_encoder": False, "text_encoder_2": True}
_MAGNITUDE = MAGNITUDE
# transformers' PEFT loader (used by load_lora_weights for text encoders) only fills a text encoder's DoRA magnitude
# from a key ending in ".lora_magnitude_vector.weight"; under the bare name diffusers writes it is skipped (its load
# report lists it as UNEXPECTED) and the magnitudes stay at their initial values
_TEXT_MAGNITUDE = _MAGNITUDE + ".weight"


def magnitude_module(key: str) -> str | None:
    """The module of a DoRA magnitude key (either spelling), else `None`."""
    for suffix in (_TEXT_MAGNITUDE, _MAGNITUDE):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return None


def loadable_magnitude_keys(state_dict: Mapping) -> dict:
    """A diffusers-layout LoRA state dict whose text-encoder DoRA magnitudes use the spelling ``load_lora_weights``
    loads (``text_encoder*.<module>.lora_magnitude_vector.weight``); everything else unchanged."""
    renamed = {}
    for key, value in state_dict.items():
        module = magnitude_module(key)
        if module is not None and key.startswith("text_encoder"):
            key = module + _TEXT_MAGNITUDE
        renamed[key] = value
    return renamed


def is_kohya_state_dict(state_dict: Mapping) -> bool:
    """Whether every key is in the kohya layout (``lora_unet_*``, ``lora_te*_*``)."""
    return bool(state_dict) and all(key.startswith(KOHYA_PREFIXES) for key in state_dict)


def split_components(state_dict: Mapping) -> dict[str, dict]:
    """A diffusers-layout LoRA state dict split per component (``unet``, ``text_encoder``, ``text_encoder_2``)."""
    parts: dict[str, dict] = {}
    for key, value in state_dict.items():
        component, _, rest = key.partition(".")
        if component not in COMPONENTS or not rest:
            raise ValueError(f"LoRA key {key!r} does not start with one of {COMPONENTS}; is this a diffusers LoRA?")
        parts.setdefault(component, {})[rest] = value
    return parts


def to_peft(component: str, state_dict: Mapping) -> dict:
    """One component's LoRA weights with PEFT names (``<module>.lora_A.weight``, ``<module>.lora_B.weight``)."""
    from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    magnitudes = {magnitude_module(k) + _MAGNITUDE: v for k, v in state_dict.items() if magnitude_module(k)}
    rest = {k: v for k, v in state_dict.items() if not magnitude_module(k)}
    if not any(".lora_A." in key for key in rest):
        rest = convert_unet_state_dict_to_peft(rest) if component == "unet" else convert_state_dict_to_peft(rest)
    return {**rest, **magnitudes}


def _component_configs(adapter_metadata: Mapping | None) -> dict[str, dict]:
    """``{"unet.r": 4, "text_encoder.r": 4, ...}`` (diffusers' header JSON) -> ``{"unet": {"r": 4}, ...}``."""
    configs: dict[str, dict] = {}
    for key, value in (adapter_metadata or {}).items():
        component, _, field = key.partition(".")
        configs.setdefault(component, {})[field] = value
    return configs


def diffusers_to_kohya(
    state_dict: Mapping, adapter_metadata: Mapping | None = None, *, sdxl: bool | None = None
) -> dict:
    """Rename a diffusers-layout LoRA state dict to the kohya layout.

    Args:
        state_dict (`Mapping`): keys ``unet.*`` / ``text_encoder.*`` / ``text_encoder_2.*`` (diffusers or PEFT names),
            or a Flux.1 LoRA's ``transformer.*`` (+ ``text_encoder.*``), written in the kohya-Flux layout.
        adapter_metadata (`Mapping`, *optional*): diffusers' ``lora_adapter_metadata`` (``"unet.lora_alpha"``, ...),
            for the per-module alphas; without it every module gets alpha = rank (scale 1).
        sdxl (`bool`, *optional*): write ``lora_te1_``/``lora_te2_`` (SDXL) instead of ``lora_te_``; inferred from
            the presence of ``text_encoder_2`` weights when `None`.

    Returns:
        `dict[str, torch.Tensor]`: the kohya state dict (``.lora_down.weight``, ``.lora_up.weight``, ``.alpha``,
        ``.dora_scale``).
    """
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    configs = _component_configs(adapter_metadata)
    if any(key.startswith("transformer.") for key in state_dict):  # Flux.1: the kohya-Flux layout
        from .lora_flux import flux_to_kohya

        flux = {k: v for k, v in state_dict.items() if k.startswith("transformer.")}
        rest = {k: v for k, v in state_dict.items() if k not in flux}  # CLIP: lora_te1_, as kohya's Flux scripts
        converted = flux_to_kohya(flux, configs.get("transformer"))
        return {**converted, **(diffusers_to_kohya(rest, adapter_metadata, sdxl=True) if rest else {})}
    parts = split_components(state_dict)
    sdxl = "text_encoder_2" in parts if sdxl is None else sdxl
    prefixes = {
        "unet": "lora_unet_",
        "text_encoder": "lora_te1_" if sdxl else "lora_te_",
        "text_encoder_2": "lora_te2_",
    }
    kohya = {}
    for component, weights in parts.items():
        peft = to_peft(component, weights)
        magnitudes = {k[: -len(_MAGNITUDE)]: v for k, v in peft.items() if k.endswith(_MAGNITUDE)}
        peft = {k: v for k, v in peft.items() if not k.endswith(_MAGNITUDE)}
        if component != "unet":  # original CLIP names (transformers >= 5 drops the text_model level)
            peft = {(k if k.startswith(_TEXT_MODEL) else _TEXT_MODEL + k): v for k, v in peft.items()}
            magnitudes = {(k if k.startswith(_TEXT_MODEL) else _TEXT_MODEL + k): v for k, v in magnitudes.items()}
        # diffusers' converter names every text encoder `text_encoder.`/`lora_te1_`; give it the unet/te1 spelling
        # and put our own prefix on afterwards
        marker = "unet" if component == "unet" else "text_encoder"
        converted = convert_state_dict_to_kohya({f"{marker}.{k}": v for k, v in peft.items()})
        own = "lora_unet_" if component == "unet" else "lora_te1_"
        for key, value in converted.items():
            name, _, suffix = key.partition(".")
            module = prefixes[component] + name.removeprefix(own)
            if suffix == "alpha":
                continue
            kohya[f"{module}.{suffix}"] = value.contiguous()
        for module in {k.rsplit(".lora_A.", 1)[0] for k in peft if ".lora_A." in k}:
            rank = peft[f"{module}.lora_A.weight"].shape[0]
            kohya_module = _kohya_module_name(component, module, sdxl=sdxl)
            if kohya_module + ".lora_down.weight" not in kohya:
                raise ValueError(f"kohya conversion lost the weights of {component}.{module}; please report this")
            # `module` carries `text_model.` for the text encoders; PEFT's pattern match takes any suffix of dotted
            # names, so an alpha_pattern key matches whether the config spelled it with that level (text_encoder_2,
            # or either encoder under transformers < 5) or without it (text_encoder under transformers >= 5)
            scaling = module_scaling(configs.get(component), module, rank)
            kohya[kohya_module + ".alpha"] = torch.tensor(float(scaling * rank))
            if module in magnitudes:
                kohya[kohya_module + ".dora_scale"] = magnitudes[module].reshape(-1, 1).contiguous()
    return kohya


def _kohya_module_name(component: str, module: str, *, sdxl: bool) -> str:
    """The kohya name of a diffusers/PEFT module name (diffusers-style UNet names; CLIP under ``text_model``)."""
    if component == "unet":
        return "lora_unet_" + module.replace(".", "_")
    prefix = {"text_encoder": "lora_te1_" if sdxl else "lora_te_", "text_encoder_2": "lora_te2_"}[component]
    if not module.startswith(_TEXT_MODEL):
        module = _TEXT_MODEL + module
    return prefix + module.replace(".", "_")


def kohya_to_diffusers(state_dict: Mapping, adapter_metadata: Mapping | None = None) -> tuple[dict, dict[str, dict]]:
    """Rename a kohya-layout LoRA state dict to the diffusers layout, through diffusers' own kohya reader.

    Args:
        state_dict (`Mapping`): ``lora_unet_*`` / ``lora_te*_*`` keys.
        adapter_metadata (`Mapping`, *optional*): diffusers' ``lora_adapter_metadata`` when the kohya file carries it
            (files written by hfvision do); otherwise the adapter configs are rebuilt from the ranks and alphas.

    Returns:
        `tuple[dict, dict]`: the diffusers state dict (``unet.*``, ``text_encoder.*``, ``text_encoder_2.*``) and the
        PEFT LoraConfig fields per component (``{"unet": {"r": 4, "lora_alpha": 8, ...}, ...}``).
    """
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    if not is_kohya_state_dict(state_dict):
        raise ValueError(
            f"not a kohya LoRA: expected keys starting with {KOHYA_PREFIXES}, got e.g. {next(iter(state_dict))!r}"
        )
    from .lora_flux import is_flux_state_dict, kohya_to_flux

    if is_flux_state_dict(state_dict):  # Flux.1: transformer through our exact inverse, CLIP as below
        unet = {k: v for k, v in state_dict.items() if k.startswith("lora_unet_")}
        converted, config = kohya_to_flux(unet, _component_configs(adapter_metadata).get("transformer"))
        rest = {k: v for k, v in state_dict.items() if k not in unet}
        text, configs = kohya_to_diffusers(rest, adapter_metadata) if rest else ({}, {})
        # diffusers' Flux files name text-encoder LoRAs the PEFT way (lora_A/lora_B), not lora_linear_layer
        text = {f"{c}.{k}": v for c, part in split_components(text).items() for k, v in to_peft(c, part).items()}
        return {**converted, **text}, {"transformer": config, **configs}
    extras = {k: v for k, v in state_dict.items() if k.endswith((".alpha", ".dora_scale"))}
    pairs = {k: v for k, v in state_dict.items() if k not in extras}
    # diffusers' reader moves tensors without copying them: the lora_down tensor identifies its kohya module
    owner = {id(v): k.split(".")[0] for k, v in pairs.items() if k.endswith(".lora_down.weight")}
    sdxl = any(k.startswith(("lora_te1_", "lora_te2_")) for k in state_dict)
    try:
        converted, _ = StableDiffusionXLPipeline.lora_state_dict(dict(pairs))
    except ValueError as error:  # diffusers lists every key it could not place, one per line
        unknown = [k for k in pairs if k in str(error)] or [str(error).split()[-1]]
        raise ValueError(
            f"{len(unknown)} kohya keys are not LoRA down/up weights diffusers can read, e.g. {unknown[0]!r} "
            "(LyCORIS variants such as LoHa/LoKr are not supported)"
        ) from None
    known = _component_configs(adapter_metadata)
    result, configs = {}, {}
    for component, weights in split_components(converted).items():
        peft = to_peft(component, weights)
        if component != "unet" and not NATIVE_TEXT_MODEL_LEVEL[component]:
            peft = {k.removeprefix(_TEXT_MODEL): v for k, v in peft.items()}
        ranks, alphas = {}, {}
        for key in [k for k in peft if k.endswith(".lora_A.weight")]:
            module = key[: -len(".lora_A.weight")]
            # the same name diffusers' converter started from, else our own forward rule (diffusers-style names)
            kohya_module = owner.get(id(peft[key])) or _kohya_module_name(component, module, sdxl=sdxl)
            rank = peft[key].shape[0]
            ranks[module] = rank
            alpha = extras.get(kohya_module + ".alpha")
            alphas[module] = rank if alpha is None else float(alpha.item())
            if kohya_module + ".dora_scale" in extras:
                scale = extras[kohya_module + ".dora_scale"]
                _check_dora_scale(kohya_module, scale, peft[module + ".lora_B.weight"].shape[0])
                peft[module + _MAGNITUDE] = scale.reshape(-1)
        configs[component] = known.get(component) or lora_config_fields(ranks, alphas, peft)
        magnitudes = {k: v for k, v in peft.items() if k.endswith(_MAGNITUDE)}
        plain = convert_state_dict_to_diffusers({k: v for k, v in peft.items() if k not in magnitudes})
        result.update({f"{component}.{k}": v for k, v in {**plain, **magnitudes}.items()})
    return loadable_magnitude_keys(result), configs


def _check_dora_scale(kohya_module: str, scale, out_features: int) -> None:
    """Refuse a ``dora_scale`` that is not one magnitude per output feature, shape ``(out, 1)`` (``(out, 1, 1, 1)``
    for convolutions): LyCORIS also writes an input-axis layout ``(1, in)``, which reshaped would be silently misread
    as output magnitudes whenever a layer is square."""
    shape = tuple(scale.shape)
    if len(shape) < 2 or shape[0] != out_features or any(side != 1 for side in shape[1:]):
        raise ValueError(
            f"{kohya_module}.dora_scale has shape {shape}; only one DoRA magnitude per output feature, shape "
            f"({out_features}, 1), is supported (LyCORIS's input-axis (1, in) layout is not)"
        )


def read_lora_file(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[dict, dict[str, str]]:
    """State dict and header of a LoRA file. Pickles (``.bin``/``.pt``) only with ``allow_pickle=True``, and even
    then through ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(
                f"{path} is a pickle ({path.suffix}); pass --allow-pickle if you trust it, or use .safetensors"
            )
        import torch

        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        return dict(state_dict.get("state_dict", state_dict)), {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable .safetensors file ({error})") from None


def write_lora_file(path: str | os.PathLike, state_dict: Mapping, metadata: Mapping[str, str]) -> Path:
    """Write ``state_dict`` with header ``metadata`` atomically (``format: pt`` as diffusers writes it)."""
    from safetensors.torch import save_file

    from ..utils.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp, metadata={"format": "pt", **metadata})
    return path


def _adapter_metadata_from_configs(configs: Mapping[str, Mapping]) -> dict:
    return {f"{component}.{field}": value for component, fields in configs.items() for field, value in fields.items()}


def kohya_header(header: Mapping[str, str]) -> dict[str, str]:
    """A diffusers LoRA header for the kohya file: diffusers' adapter JSON moved to ``hfvision.lora_adapter_metadata``
    (``load_lora_weights`` rejects a kohya file that has both alphas and ``lora_adapter_metadata``)."""
    header = {k: v for k, v in header.items() if k != "format"}
    if ADAPTER_METADATA_KEY in header:
        header[KOHYA_ADAPTER_METADATA_KEY] = header.pop(ADAPTER_METADATA_KEY)
    return header


def diffusers_header(header: Mapping[str, str]) -> dict[str, str]:
    """The inverse of [`kohya_header`]."""
    header = {k: v for k, v in header.items() if k != "format"}
    if KOHYA_ADAPTER_METADATA_KEY in header:
        header[ADAPTER_METADATA_KEY] = header.pop(KOHYA_ADAPTER_METADATA_KEY)
    return header


def convert_lora(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    to: str,
    *,
    overwrite: bool = False,
    allow_pickle: bool = False,
    family: str | None = None,
    title: str | None = None,
    trigger_phrase: str | None = None,
    resolution: int | str | None = None,
    base_model: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Convert a LoRA file between the diffusers and the kohya/AUTOMATIC1111 layouts.

    The header is carried over (ModelSpec ``modelspec.*`` entries and the PEFT adapter configs, which let a kohya
    file written by hfvision convert back to the exact original) and completed with ModelSpec entries for the
    family; the values passed override it, ``metadata`` entries last.

    Args:
        in_path (`str` or `os.PathLike`): the LoRA to read (``.safetensors``; pickles need ``allow_pickle``), or a
            training output folder holding ``pytorch_lora_weights.safetensors`` (``to="kohya"``) or
            ``pytorch_lora_weights_kohya.safetensors`` (``to="diffusers"``).
        out_path (`str` or `os.PathLike`): the file to write (``.safetensors``).
        to (`str`): ``"kohya"`` or ``"diffusers"``.
        overwrite (`bool`, *optional*, defaults to `False`): replace an existing ``out_path``.
        allow_pickle (`bool`, *optional*, defaults to `False`): accept ``.bin``/``.pt`` input (loaded with
            ``weights_only=True``).
        family (`str`, *optional*): ``"sd1"``, ``"sd2"``, ``"sd2-v"``, ``"sdxl"``, ``"flux-dev"`` or
            ``"flux-schnell"``; decides
            ``modelspec.architecture`` and SDXL's ``lora_te1_``/``lora_te2_`` prefixes. Default: the input's
            ``modelspec.architecture``, else guessed from the weights (SD 1.x / SDXL widths).
        title (`str`, *optional*): ``modelspec.title`` (default: the input's, else ``out_path``'s stem).
        trigger_phrase (`str`, *optional*): ``modelspec.trigger_phrase``.
        resolution (`int` or `str`, *optional*): ``modelspec.resolution`` (``512`` or ``"512x512"``).
        base_model (`str`, *optional*): recorded as ``hfvision.base_model``.
        description (`str`, *optional*): ``modelspec.description``.
        metadata (`Mapping[str, str]`, *optional*): more header entries, set last.

    Returns:
        `Path`: ``out_path``.

    >>> convert_lora("my_lora_kohya.safetensors", "my_lora.safetensors", to="diffusers")
    PosixPath('my_lora.safetensors')
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if to not in ("kohya", "diffusers"):
        raise ValueError(f"to={to!r} must be 'kohya' or 'diffusers'")
    if in_path.is_dir():  # a training output folder: the file of the other layout in it
        name = WEIGHTS_NAME if to == "kohya" else KOHYA_WEIGHTS_NAME
        if not (in_path / name).is_file():
            raise FileNotFoundError(f"{in_path} is a folder without {name}; give the LoRA file itself")
        in_path = in_path / name
    if out_path.suffix.lower() != ".safetensors":
        raise ValueError(f"{out_path} must end in .safetensors (LoRA files are written as safetensors only)")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; choose another name or pass --overwrite")
    if out_path.resolve() == in_path.resolve():
        raise ValueError(f"{out_path} is the input file; write the conversion to another file")
    if family is not None:
        from .modelspec import resolve_family

        family = resolve_family(family)
    state_dict, header = read_lora_file(in_path, allow_pickle=allow_pickle)
    if not state_dict:
        raise ValueError(f"{in_path} holds no tensors")
    kohya_input = is_kohya_state_dict(state_dict)
    if to == "kohya" and kohya_input:
        raise ValueError(f"{in_path} is already in the kohya layout; use --to diffusers to convert it back")
    if to == "diffusers" and not kohya_input:
        raise ValueError(f"{in_path} is not in the kohya layout (keys like lora_unet_*); nothing to convert")
    if to == "kohya":
        from .modelspec import family_from_architecture

        named = family or family_from_architecture(header.get("modelspec.architecture", ""))
        # SDXL's text encoders are lora_te1_/lora_te2_ even when only the first one is adapted
        sdxl = True if (named or guess_family(state_dict)) == "sdxl" else None
        if any(k.startswith("transformer.") for k in state_dict):
            from .lora_flux import check_flux_family

            check_flux_family(in_path, named, state_dict)
        carried = kohya_header(header)
        adapter_metadata = _adapter_json(carried.get(KOHYA_ADAPTER_METADATA_KEY), in_path)
        converted = diffusers_to_kohya(state_dict, adapter_metadata, sdxl=sdxl)
    else:
        carried = diffusers_header(header)
        adapter_metadata = _adapter_json(carried.get(ADAPTER_METADATA_KEY), in_path)
        converted, configs = kohya_to_diffusers(state_dict, adapter_metadata)
        if ADAPTER_METADATA_KEY not in carried:
            carried[ADAPTER_METADATA_KEY] = json.dumps(_adapter_metadata_from_configs(configs), sort_keys=True)
    spec = lora_modelspec(
        header,
        state_dict,
        family=family,
        title=title or header.get("modelspec.title") or out_path.stem,
        trigger_phrase=trigger_phrase,
        resolution=resolution,
        base_model=base_model,
        description=description,
    )
    carried.update(spec)
    carried.update(metadata or {})
    write_lora_file(out_path, converted, carried)
    logger.info("wrote %s (%s layout, %d tensors)", out_path, to, len(converted))
    return out_path


def _adapter_json(text: str | None, path: Path) -> dict | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path} has a corrupt lora_adapter_metadata header entry (not JSON)") from None
