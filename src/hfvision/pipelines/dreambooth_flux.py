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

import json
import os
from collections.abc import Callable
from pathlib import Path
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

__all__ = ["DreamBoothFluxPipeline", "FlowDreamBoothMixin"]


class FlowDreamBoothMixin(DreamBoothMixin):
    """`DreamBoothMixin` for pipelines loaded in one call: `save_pretrained` also names this module and class in
    ``model_index.json`` (``"_class_name": ["<module>", "<Class>"]``), which diffusers resolves to the shipped file
    when ``trust_remote_code=True`` (no ``custom_pipeline`` argument needed). The class's own ``from_pretrained``
    still returns the class itself, without remote code."""

    # transformer class this pipeline runs -> the DreamBooth pipeline for each transformer (for a clear error)
    _transformer_class: str = ""
    _PIPELINE_FOR_TRANSFORMER = {
        "FluxTransformer2DModel": "DreamBoothFluxPipeline",
        "SD3Transformer2DModel": "DreamBoothSD3Pipeline",
    }

    @classmethod
    def from_components(cls, pipe_or_components, instance_token=None, class_noun=None, family=None, **overrides):
        """`DreamBoothMixin.from_components`, refusing another family's components with the class to use instead."""
        components = getattr(pipe_or_components, "components", pipe_or_components)
        model = overrides.get("transformer", components.get("transformer", components.get("unet")))
        found = type(model).__name__
        if found != cls._transformer_class:
            right = cls._PIPELINE_FOR_TRANSFORMER.get(found, "DreamBoothPipeline or DreamBoothXLPipeline")
            raise ValueError(
                f"{cls.__name__}.from_components needs a {cls._transformer_class}, got a {found}; use {right} instead"
            )
        return super().from_components(pipe_or_components, instance_token, class_noun, family, **overrides)

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        # Why this override: with a ``[module, class]`` name, diffusers' `from_pretrained` loads the shipped module as
        # remote code even when called on the class itself. Naming this class as a plain string makes diffusers use
        # `cls` (hfvision's code) for folders and repos saved by it. `from_pretrained` reads model_index.json here.
        config = super()._dict_from_json_file(json_file)
        name = config.get("_class_name")
        if isinstance(name, (list, tuple)) and len(name) == 2 and name[1] == cls.__name__:
            config["_class_name"] = cls.__name__
        return config

    def save_pipeline_code(self, save_directory: str | os.PathLike) -> list[Path]:
        written = super().save_pipeline_code(save_directory)
        index_file = Path(save_directory) / "model_index.json"
        index = json.loads(index_file.read_text(encoding="utf-8"))
        index["_class_name"] = [Path(self._code_files[0]).stem, type(self).__name__]
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return written


class DreamBoothFluxPipeline(FlowDreamBoothMixin, FluxPipeline):
    r"""Flux.1 text-to-image for a DreamBooth subject (see the module docstring).

    Args:
        scheduler, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2, transformer, image_encoder,
            feature_extractor: as `FluxPipeline`.
        instance_token (`str`, *optional*): the trained identifier that ``{token}`` expands to, e.g. ``"sks"``.
        class_noun (`str`, *optional*): the subject's class that ``{class}`` expands to, e.g. ``"dog"``.
        family (`str`, *optional*, defaults to ``"flux"``): base family, stored in the config.
    """

    _code_files = ("dreambooth_flux.py", "dreambooth_utils.py")
    _transformer_class = "FluxTransformer2DModel"

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
        super().__init__(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            transformer=transformer,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
        )
        self.register_to_config(
            instance_token=instance_token, class_noun=class_noun, family=family or "flux", concepts=concepts
        )

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
        return super().__call__(
            prompt=self.expand_prompt(prompt),
            prompt_2=self.expand_prompt(prompt_2),
            negative_prompt=self.expand_prompt(negative_prompt),
            negative_prompt_2=self.expand_prompt(negative_prompt_2),
            true_cfg_scale=true_cfg_scale,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            sigmas=sigmas,
            guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt,
            generator=generator,
            latents=latents,
            prompt_embeds=prompt_embeds,
            pooled_prompt_embeds=pooled_prompt_embeds,
            ip_adapter_image=ip_adapter_image,
            ip_adapter_image_embeds=ip_adapter_image_embeds,
            negative_ip_adapter_image=negative_ip_adapter_image,
            negative_ip_adapter_image_embeds=negative_ip_adapter_image_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds,
            output_type=output_type,
            return_dict=return_dict,
            joint_attention_kwargs=joint_attention_kwargs,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length,
        )
