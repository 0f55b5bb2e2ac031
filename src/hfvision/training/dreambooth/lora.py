"""LoRA through PEFT: adapters on the UNet attention projections (and optionally the text encoders), saved as
diffusers' ``pytorch_lora_weights.safetensors`` with the adapter config in its metadata, so
``pipe.load_lora_weights(folder)`` restores exactly the trained model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
UNET_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


def add_lora(model: torch.nn.Module, rank: int, alpha: int, dropout: float, target_modules) -> None:
    """Attach a ``default`` LoRA adapter (gaussian init: the model is unchanged until trained)."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
        target_modules=list(target_modules),
    )
    model.add_adapter(config)


def lora_layers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights of ``model`` with diffusers' key names."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))


def lora_metadata(model: torch.nn.Module) -> dict:
    return model.peft_config["default"].to_dict()


def save_lora(directory: str | os.PathLike, family: str, unet, text_encoders: list | None = None) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` for ``unet`` (and LoRA-carrying ``text_encoders``)."""
    from .components import pipeline_class

    kwargs = {"unet_lora_layers": lora_layers(unet), "unet_lora_adapter_metadata": lora_metadata(unet)}
    names = ("text_encoder", "text_encoder_2")
    for name, encoder in zip(names, text_encoders or []):
        kwargs[f"{name}_lora_layers"] = lora_layers(encoder)
        kwargs[f"{name}_lora_adapter_metadata"] = lora_metadata(encoder)
    pipeline_class(family).save_lora_weights(directory, safe_serialization=True, **kwargs)
    return Path(directory) / LORA_WEIGHTS_NAME


def load_lora(directory: str | os.PathLike, family: str, unet, text_encoders: list | None = None) -> None:
    """Load weights written by [`save_lora`] into models that already carry the same adapters (resume)."""
    from diffusers.training_utils import _set_state_dict_into_text_encoder
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    from .components import pipeline_class

    state_dict, *_ = pipeline_class(family).lora_state_dict(directory)
    unet_state = {k.removeprefix("unet."): v for k, v in state_dict.items() if k.startswith("unet.")}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA weights in {directory} do not match the UNet adapters: {unexpected[:3]}")
    for name, encoder in zip(("text_encoder", "text_encoder_2"), text_encoders or []):
        _set_state_dict_into_text_encoder(state_dict, prefix=f"{name}.", text_encoder=encoder)
