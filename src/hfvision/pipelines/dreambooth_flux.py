"""Flux.1 DreamBooth pipeline: diffusers' `FluxPipeline` with the DreamBooth conveniences.

`DreamBoothFluxPipeline` *is* a `FluxPipeline` (same generation, outputs, LoRA loading, callbacks, offloading); it only
adds ``instance_token`` / ``class_noun`` / ``family`` in the config and ``{token}`` / ``{class}`` expansion in the
prompt arguments. With the same components and seed it gives the same images as `FluxPipeline`.

`save_pretrained` / `push_to_hub` ship this file and ``dreambooth_utils.py`` next to the weights and record
``"_class_name": ["dreambooth_flux", "DreamBoothFluxPipeline"]`` in ``model_index.json``, so that without hfvision
``DiffusionPipeline.from_pretrained(path_or_repo, trust_remote_code=True)`` returns this class. Self-contained for that
reason: only torch/transformers/diffusers and ``dreambooth_utils.py``.

>>> from hfvision.pipelines.dreambooth_flux import DreamBoothFluxPipeline
>>> from hfvision.testing import tiny_flux_pipeline
>>> pipe = DreamBoothFluxPipeline.from_components(tiny_flux_pipeline("dev"), instance_token="sks", class_noun="dog")
>>> image = pipe("a photo of {token} {class}", height=64, width=64, num_inference_steps=2).images[0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.image_processor import PipelineImageInput
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
    T5EncoderModel,
    T5TokenizerFast,
)

from .dreambooth_utils import DreamBoothMixin

__all__ = ["DreamBoothFluxPipeline"]


class DreamBoothFluxPipeline(DreamBoothMixin, FluxPipeline):
    r"""Flux.1 text-to-image for a DreamBooth subject (see the module docstring).

    Args:
        scheduler, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2, transformer, image_encoder,
            feature_extractor: as `FluxPipeline`.
        instance_token (`str`, *optional*): the trained identifier that ``{token}`` expands to, e.g. ``"sks"``.
        class_noun (`str`, *optional*): the subject's class that ``{class}`` expands to, e.g. ``"dog"``.
        family (`str`, *optional*, defaults to ``"flux"``): base family, stored in the config.
    """

    _code_files = ("dreambooth_flux.py", "dreambooth_utils.py")
    _family = "flux"
    _denoiser_class = "FluxTransformer2DModel"

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        text_encoder_2: T5EncoderModel,
        tokenizer_2: T5TokenizerFast,
        transformer: FluxTransformer2DModel,
        image_encoder: CLIPVisionModelWithProjection = None,
        feature_extractor: CLIPImageProcessor = None,
        instance_token: str | None = None,
        class_noun: str | None = None,
        family: str | None = None,
        concepts: list[dict] | None = None,
    ):
        self._init_pipeline(locals())

    def __call__(
        self,
        prompt: str | list[str] = None,
        prompt_2: str | list[str] | None = None,
        negative_prompt: str | list[str] = None,
        negative_prompt_2: str | list[str] | None = None,
        true_cfg_scale: float = 1.0,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 28,
        sigmas: list[float] | None = None,
        guidance_scale: float = 3.5,
        num_images_per_prompt: int | None = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.FloatTensor | None = None,
        prompt_embeds: torch.FloatTensor | None = None,
        pooled_prompt_embeds: torch.FloatTensor | None = None,
        ip_adapter_image: PipelineImageInput | None = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        negative_ip_adapter_image: PipelineImageInput | None = None,
        negative_ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        negative_prompt_embeds: torch.FloatTensor | None = None,
        negative_pooled_prompt_embeds: torch.FloatTensor | None = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
        joint_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[int, int], None] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature, never mutated
        max_sequence_length: int = 512,
    ):
        r"""Generate images: `FluxPipeline.__call__` after expanding ``{token}`` / ``{class}`` in ``prompt``,
        ``prompt_2``, ``negative_prompt`` and ``negative_prompt_2``.

        Args:
            prompt (`str` or `list[str]`): the prompt (CLIP and, unless ``prompt_2`` is given, T5), e.g.
                ``"a photo of {token} {class}"``. Other arguments: see `FluxPipeline.__call__`.

        Returns:
            `FluxPipelineOutput` (``.images``), or a tuple when ``return_dict=False``.
        """
        return super().__call__(**self._call_arguments(locals()))
