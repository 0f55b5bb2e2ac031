"""LoRA (or DoRA) through PEFT: adapters on the UNet attention projections (and optionally the text encoders), saved as
diffusers' ``pytorch_lora_weights.safetensors`` (Flux/SD3: adapters on the transformer's attention projections) with
the adapter config and ModelSpec entries in its header, so ``pipe.load_lora_weights(folder)`` restores exactly the
trained model; optionally also in the kohya/AUTOMATIC1111 layout (``pytorch_lora_weights_kohya.safetensors``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ...conversion.lora import (
    ADAPTER_METADATA_KEY,
    KOHYA_WEIGHTS_NAME,
    WEIGHTS_NAME,
    diffusers_to_kohya,
    kohya_header,
    loadable_magnitude_keys,
    write_lora_file,
)
from ...utils.logging import get_logger

logger = get_logger(__name__)

LORA_WEIGHTS_NAME = WEIGHTS_NAME
KOHYA_LORA_WEIGHTS_NAME = KOHYA_WEIGHTS_NAME
UNET_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
# The transformer modules diffusers' train_dreambooth_lora_flux.py / _sd3.py adapt by default (joint attention:
# the image stream's and the text stream's projections).
TRANSFORMER_TARGET_MODULES = (
    "attn.to_k",
    "attn.to_q",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
)
# diffusers' train_dreambooth_lora_flux.py also adapts the feed-forward linears of both streams by default (its SD3
# script does not)
FLUX_FEED_FORWARD_TARGET_MODULES = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")


def denoiser_target_modules(family: str, lora_layers: str | None = None, lora_blocks: str | None = None) -> list[str]:
    """The modules of the UNet / transformer that get adapters.

    Args:
        family (`str`): family (``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"``, ``"sd3"``).
        lora_layers (`str`, *optional*): comma-separated module names (``--lora_layers``), replacing the default.
        lora_blocks (`str`, *optional*): comma-separated ``transformer_blocks`` indices (``--lora_blocks``, SD3):
            only those blocks' modules are adapted.

    >>> denoiser_target_modules("flux")[-4:]
    ['ff.net.0.proj', 'ff.net.2', 'ff_context.net.0.proj', 'ff_context.net.2']
    >>> denoiser_target_modules("sd3", "attn.to_q", "0,2")
    ['transformer_blocks.0.attn.to_q', 'transformer_blocks.2.attn.to_q']
    """
    if family in ("sd1", "sd2", "sdxl"):
        if lora_layers or lora_blocks:
            raise ValueError("--lora_layers / --lora_blocks apply to Flux and SD3 transformers; drop them for SD")
        return list(UNET_TARGET_MODULES)
    if lora_layers:
        modules = [m.strip() for m in lora_layers.split(",") if m.strip()]
    else:
        modules = [*TRANSFORMER_TARGET_MODULES, *(FLUX_FEED_FORWARD_TARGET_MODULES if family == "flux" else ())]
    if lora_blocks:
        if family != "sd3":
            raise ValueError(f"--lora_blocks applies to SD3 transformers, not {family}; use --lora_layers")
        blocks = [int(b) for b in lora_blocks.split(",")]
        modules = [f"transformer_blocks.{b}.{m}" for b in blocks for m in modules]
    return modules


def add_lora(
    model: torch.nn.Module, rank: int, alpha: int, dropout: float, target_modules, use_dora: bool = False
) -> None:
    """Attach a ``default`` LoRA adapter (gaussian init: the model is unchanged until trained).

    Args:
        model (`torch.nn.Module`): a diffusers UNet or transformers text encoder (PEFT-integrated ``add_adapter``).
        rank (`int`): LoRA rank ``r``.
        alpha (`int`): ``lora_alpha`` (scale = alpha / rank).
        dropout (`float`): LoRA dropout.
        target_modules (`Iterable[str]`): module names to adapt.
        use_dora (`bool`, *optional*, defaults to `False`): weight-decomposed LoRA (PEFT DoRA); the magnitude vectors
            start at the weights' norms, so the model is still unchanged until trained.
    """
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
        target_modules=list(target_modules),
        use_dora=use_dora,
    )
    model.add_adapter(config)


def check_kohya_family(family: str, use_dora: bool = False) -> None:
    """Refuse ``--output_kohya_format`` where no kohya layout is written: SD3 transformers (kohya's tools have no SD3
    LoRA spelling that diffusers reads back) and Flux DoRA (the kohya-Flux layout fuses modules, which magnitude
    vectors do not survive). One line, before any weights load."""
    if family == "sd3":
        raise ValueError(
            "--output_kohya_format is not available for SD3 LoRAs (no kohya layout for SD3 transformers); drop it "
            "(pytorch_lora_weights.safetensors loads with load_lora_weights)"
        )
    if family == "flux" and use_dora:
        raise ValueError("--output_kohya_format with --use_dora: the kohya-Flux layout has no DoRA; drop one of them")


def flux_modelspec_architecture(transformer) -> dict[str, str]:
    """``modelspec.architecture`` of a Flux.1 LoRA: ``flux-1-schnell/lora`` for a transformer without guidance
    embedding (schnell), ``flux-1-dev/lora`` otherwise."""
    from ...conversion.modelspec import ARCHITECTURES, LORA_SUFFIX

    variant = "flux-dev" if transformer.config.get("guidance_embeds", True) else "flux-schnell"
    return {"modelspec.architecture": ARCHITECTURES[variant].architecture + LORA_SUFFIX}


def lora_layers(model: torch.nn.Module, peft_keys: bool = False) -> dict[str, torch.Tensor]:
    """The adapter weights of ``model`` with diffusers' key names (PEFT's ``lora_A``/``lora_B`` names, as diffusers
    writes them for transformers, with ``peft_keys=True``)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state_dict = get_peft_model_state_dict(model)
    return state_dict if peft_keys else convert_state_dict_to_diffusers(state_dict)


def lora_metadata(model: torch.nn.Module) -> dict:
    return model.peft_config["default"].to_dict()


def save_lora(
    directory: str | os.PathLike,
    family: str,
    unet,
    text_encoders: list | None = None,
    *,
    kohya: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` for ``unet`` (and LoRA-carrying ``text_encoders``).

    The file is diffusers' own (``save_lora_weights``, with the adapter configs in ``lora_adapter_metadata``, so
    ``load_lora_weights`` restores the exact model); ``metadata`` (e.g. from
    [`~hfvision.conversion.modelspec.modelspec_metadata`]) is merged into its header.

    Args:
        directory (`str` or `os.PathLike`): output folder.
        family (`str`): family (``"sd1"``, ``"sd2"``, ``"sdxl"``, ...), picks the pipeline class that writes the file.
        unet: the UNet carrying a ``default`` adapter.
        text_encoders (`list`, *optional*): text encoders carrying adapters, in pipeline order.
        kohya (`bool`, *optional*, defaults to `False`): also write ``pytorch_lora_weights_kohya.safetensors`` in the
            kohya/AUTOMATIC1111 layout (same header). With DoRA, that file stores the magnitudes as ``dora_scale``;
            diffusers drops them from kohya files and other readers normalise differently (see
            :mod:`hfvision.conversion.lora`), so only the diffusers file reproduces a DoRA model exactly.
        metadata (`dict[str, str]`, *optional*): header entries for both files.

    Returns:
        `Path`: the diffusers-layout file.

    Flux.1: the kohya file is the kohya-Flux layout ComfyUI loads (``lora_unet_double_blocks_*``, fused q/k/v, CLIP
    as ``lora_te1_*``), with ``modelspec.architecture`` ``flux-1-dev/lora`` or ``flux-1-schnell/lora`` (no guidance
    embedding). SD3 has no kohya layout (refused).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .components import FAMILIES, pipeline_class

    denoiser = FAMILIES[family].denoiser
    flow = FAMILIES[family].flow
    kwargs = {
        f"{denoiser}_lora_layers": lora_layers(unet, peft_keys=flow),
        f"{denoiser}_lora_adapter_metadata": lora_metadata(unet),
    }
    names = ("text_encoder", "text_encoder_2")
    for name, encoder in zip(names, text_encoders or []):
        # Flux/SD3: PEFT names for the CLIP LoRA too, as diffusers' train_dreambooth_lora_flux.py / _sd3.py write
        kwargs[f"{name}_lora_layers"] = lora_layers(encoder, peft_keys=flow)
        kwargs[f"{name}_lora_adapter_metadata"] = lora_metadata(encoder)
    pipeline_class(family).save_lora_weights(directory, safe_serialization=True, **kwargs)
    path = Path(directory) / LORA_WEIGHTS_NAME
    use_dora = any(getattr(m.peft_config["default"], "use_dora", False) for m in text_encoders or [])
    if metadata and family == "flux":
        metadata = {**metadata, **flux_modelspec_architecture(unet)}
    if not metadata and not kohya and not use_dora:
        return path
    with safe_open(path, "pt") as f:
        header = {**(f.metadata() or {}), **(metadata or {})}
    state_dict = load_file(path)
    if metadata or use_dora:
        state_dict = loadable_magnitude_keys(state_dict)
        write_lora_file(path, state_dict, header)
    if kohya:
        check_kohya_family(family)
        adapter_metadata = json.loads(header[ADAPTER_METADATA_KEY]) if ADAPTER_METADATA_KEY in header else None
        # Flux: the transformer in the kohya-Flux layout (fused qkv / linear1), CLIP as lora_te1_ (kohya's Flux
        # scripts' names); see hfvision.conversion.lora_flux
        kohya_state = diffusers_to_kohya(state_dict, adapter_metadata, sdxl=family == "sdxl")
        if any(k.endswith(".dora_scale") for k in kohya_state):
            logger.warning(
                "%s stores DoRA magnitudes as dora_scale, which diffusers drops and other tools normalise "
                "differently: only %s reproduces the DoRA model exactly",
                KOHYA_LORA_WEIGHTS_NAME,
                LORA_WEIGHTS_NAME,
            )
        write_lora_file(Path(directory) / KOHYA_LORA_WEIGHTS_NAME, kohya_state, kohya_header(header))
    return path


def load_lora(directory: str | os.PathLike, family: str, unet, text_encoders: list | None = None) -> None:
    """Load weights written by [`save_lora`] into models that already carry the same adapters (resume)."""
    from diffusers.training_utils import _set_state_dict_into_text_encoder
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    from .components import FAMILIES, pipeline_class

    prefix = FAMILIES[family].denoiser + "."
    state_dict = pipeline_class(family).lora_state_dict(directory)
    state_dict = state_dict[0] if isinstance(state_dict, tuple) else state_dict
    unet_state = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA weights in {directory} do not match the UNet adapters: {unexpected[:3]}")
    for name, encoder in zip(("text_encoder", "text_encoder_2"), text_encoders or []):
        _set_state_dict_into_text_encoder(state_dict, prefix=f"{name}.", text_encoder=encoder)
