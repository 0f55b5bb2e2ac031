"""Stable Diffusion 3 / 3.5 DreamBooth pipeline: diffusers' `StableDiffusion3Pipeline` with the DreamBooth conveniences.

`DreamBoothSD3Pipeline` *is* a `StableDiffusion3Pipeline`; it only adds ``instance_token`` / ``class_noun`` /
``family`` in the config and ``{token}`` / ``{class}`` expansion in the six prompt arguments. With the same components
and seed it gives the same images as `StableDiffusion3Pipeline`.

`save_pretrained` / `push_to_hub` ship this file and ``dreambooth_utils.py`` (the shared logic) and record
``"_class_name": ["dreambooth_sd3", "DreamBoothSD3Pipeline"]``, so that without hfvision
``DiffusionPipeline.from_pretrained(path_or_repo, trust_remote_code=True)`` returns this class.

>>> from hfvision.pipelines.dreambooth_sd3 import DreamBoothSD3Pipeline
>>> from hfvision.testing import tiny_sd3_pipeline
>>> pipe = DreamBoothSD3Pipeline.from_components(tiny_sd3_pipeline(), instance_token="sks", class_noun="dog")
>>> image = pipe("a photo of {token} {class}", num_inference_steps=2).images[0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.image_processor import PipelineImageInput
from transformers import (
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    SiglipImageProcessor,
    SiglipVisionModel,
    T5EncoderModel,
    T5TokenizerFast,
)

from .dreambooth_utils import DreamBoothMixin

__all__ = ["DreamBoothSD3Pipeline"]


class DreamBoothSD3Pipeline(DreamBoothMixin, StableDiffusion3Pipeline):
    r"""SD3 / SD3.5 text-to-image for a DreamBooth subject (see the module docstring).

    Args:
        transformer, scheduler, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2, text_encoder_3,
            tokenizer_3, image_encoder, feature_extractor: as `StableDiffusion3Pipeline`.
        instance_token (`str`, *optional*): the trained identifier that ``{token}`` expands to, e.g. ``"sks"``.
        class_noun (`str`, *optional*): the subject's class that ``{class}`` expands to, e.g. ``"dog"``.
        family (`str`, *optional*, defaults to ``"sd3"``): base family, stored in the config.
    """

    _code_files = ("dreambooth_sd3.py", "dreambooth_utils.py")
    _family = "sd3"
    _denoiser_class = "SD3Transformer2DModel"

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer_2: CLIPTokenizer,
        text_encoder_3: T5EncoderModel,
        tokenizer_3: T5TokenizerFast,
        image_encoder: SiglipVisionModel = None,
        feature_extractor: SiglipImageProcessor = None,
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
        prompt_3: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 28,
        sigmas: list[float] | None = None,
        guidance_scale: float = 7.0,
        negative_prompt: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        negative_prompt_3: str | list[str] | None = None,
        num_images_per_prompt: int | None = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.FloatTensor | None = None,
        prompt_embeds: torch.FloatTensor | None = None,
        negative_prompt_embeds: torch.FloatTensor | None = None,
        pooled_prompt_embeds: torch.FloatTensor | None = None,
        negative_pooled_prompt_embeds: torch.FloatTensor | None = None,
        ip_adapter_image: PipelineImageInput | None = None,
        ip_adapter_image_embeds: torch.Tensor | None = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
        joint_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        callback_on_step_end: Callable[[int, int], None] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature, never mutated
        max_sequence_length: int = 256,
        skip_guidance_layers: list[int] = None,
        skip_layer_guidance_scale: float = 2.8,
        skip_layer_guidance_stop: float = 0.2,
        skip_layer_guidance_start: float = 0.01,
        mu: float | None = None,
    ):
        r"""Generate images: `StableDiffusion3Pipeline.__call__` after expanding ``{token}`` / ``{class}`` in
        ``prompt``, ``prompt_2``, ``prompt_3`` and the three negative prompts.

        Args:
            prompt (`str` or `list[str]`): the prompt (all three encoders unless ``prompt_2`` / ``prompt_3`` are
                given), e.g. ``"a photo of {token} {class}"``. Other arguments: see
                `StableDiffusion3Pipeline.__call__`.

        Returns:
            `StableDiffusion3PipelineOutput` (``.images``), or a tuple when ``return_dict=False``.
        """
        return super().__call__(**self._call_arguments(locals()))
