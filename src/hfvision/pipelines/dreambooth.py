"""Text-to-image generation with a DreamBooth-trained Stable Diffusion 1.x / 2.x subject, with optional ControlNet.

`DreamBoothPipeline` *is* diffusers' `StableDiffusionPipeline` (same constructor components, ``__call__``
arguments, denoising loop, outputs, safety checker and LoRA / textual inversion / IP-Adapter / single-file mixins),
plus what hfvision adds: the trained identifier (``instance_token``, ``class_noun``) and base ``family`` in its
config, ``{token}`` / ``{class}`` expansion in prompts, an optional ControlNet (``control_image``; the call then runs
diffusers' `StableDiffusionControlNetPipeline` on the same modules), and `save_pretrained` / `push_to_hub` that ship
this code so ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` loads it without hfvision.

This file is self-contained on purpose: it imports only torch, transformers, diffusers and its siblings
``dreambooth_utils.py`` and ``controlnet_utils.py``, which are shipped with it.

>>> from hfvision.pipelines.dreambooth import DreamBoothPipeline
>>> from hfvision.testing import tiny_sd_pipeline
>>> pipe = DreamBoothPipeline.from_components(tiny_sd_pipeline("sd1"), instance_token="sks", class_noun="dog")
>>> image = pipe("a photo of {token} {class}", num_inference_steps=2, output_type="np").images[0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import USE_PEFT_BACKEND, logging, scale_lora_layers, unscale_lora_layers
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from .controlnet_utils import check_controlnet_compatible
from .dreambooth_utils import DreamBoothMixin, expand_prompt, infer_family

__all__ = ["DreamBoothPipeline", "expand_prompt", "infer_family"]

# diffusers' own SD pipeline logger: warnings (prompt truncation) behave exactly like the parent's.
logger = logging.get_logger(StableDiffusionPipeline.__module__)


class DreamBoothPipeline(DreamBoothMixin, StableDiffusionPipeline):
    r"""Stable Diffusion 1.x / 2.x text-to-image for a DreamBooth subject, with an optional ControlNet.

    Arguments are those of [`StableDiffusionPipeline`], plus:

    Args:
        controlnet ([`ControlNetModel`], *optional*): conditions generation on ``control_image``; must match the UNet
            (checked here and before every call).
        instance_token (`str`, *optional*): the trained identifier (e.g. ``"sks"``) that ``{token}`` expands to.
        class_noun (`str`, *optional*): the subject's class (e.g. ``"dog"``) that ``{class}`` expands to.
        family (`str`, *optional*): base family, ``"sd1"`` or ``"sd2"`` (inferred from the UNet when omitted).
        concepts (`list[dict]`, *optional*): every subject of a several-subject run (``{"token", "class_noun",
            "prompt"}`` each); ``{token}`` / ``{class}`` expand to the first.

    A base model's safety checker is kept, as in diffusers; to drop it pass ``safety_checker=None,
    requires_safety_checker=False`` (to the constructor, `from_pretrained` or `from_components`).

    Example:

    >>> pipe = DreamBoothPipeline.from_pretrained("path/to/dreambooth-output")  # doctest: +SKIP
    >>> image = pipe("a photo of {token} {class} in Paris", num_inference_steps=30).images[0]  # doctest: +SKIP
    """

    _optional_components = [*StableDiffusionPipeline._optional_components, "controlnet"]
    _check_controlnet = staticmethod(check_controlnet_compatible)

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        safety_checker: StableDiffusionSafetyChecker | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        requires_safety_checker: bool = True,
        controlnet: ControlNetModel | None = None,
        instance_token: str | None = None,
        class_noun: str | None = None,
        family: str | None = None,
        concepts: list[dict] | None = None,
    ):
        if unet is not None and infer_family(unet) == "sdxl":
            raise ValueError("this UNet is SDXL-shaped (text_time conditioning); use DreamBoothXLPipeline")
        self._init_pipeline(locals())

    def encode_prompt(
        self,
        prompt,
        device,
        num_images_per_prompt,
        do_classifier_free_guidance,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
    ):
        """`StableDiffusionPipeline.encode_prompt`, with ``clip_skip`` working under transformers 5."""
        # Overridden only for `clip_skip`: diffusers 0.42.1 applies CLIP's final layer norm through
        # `text_encoder.text_model.final_layer_norm`, and transformers 5's CLIPTextModel has no `text_model` (the norm
        # is `text_encoder.final_layer_norm`), so the parent raises AttributeError. Same math here (hidden state
        # -(clip_skip + 1), then the final layer norm); negatives, repeats and dtype stay the parent's.
        if clip_skip is not None and prompt_embeds is None and not hasattr(self.text_encoder, "text_model"):
            prompt_embeds = self._clip_skip_prompt_embeds(prompt, device, clip_skip, lora_scale)
            clip_skip = None
        prompt_embeds, negative_prompt_embeds = super().encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            do_classifier_free_guidance,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            lora_scale=lora_scale,
            clip_skip=clip_skip,
        )
        return prompt_embeds, negative_prompt_embeds

    def _clip_skip_prompt_embeds(self, prompt, device, clip_skip: int, lora_scale: float | None) -> torch.Tensor:
        if lora_scale is not None and USE_PEFT_BACKEND:
            scale_lora_layers(self.text_encoder, lora_scale)
        prompt = self.maybe_convert_prompt(prompt, self.tokenizer)  # textual inversion multi-vector tokens
        max_length = self.tokenizer.model_max_length
        inputs = self.tokenizer(
            prompt, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        untruncated = self.tokenizer(prompt, padding="longest", return_tensors="pt").input_ids
        if untruncated.shape[-1] >= inputs.input_ids.shape[-1] and not torch.equal(inputs.input_ids, untruncated):
            removed = self.tokenizer.batch_decode(untruncated[:, max_length - 1 : -1])
            logger.warning(
                "The following part of your input was truncated because CLIP can only handle sequences up to "
                f"{max_length} tokens: {removed}"
            )
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        mask = inputs.attention_mask.to(device) if use_mask else None
        output = self.text_encoder(inputs.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
        embeds = self.text_encoder.final_layer_norm(output.hidden_states[-(clip_skip + 1)])
        if lora_scale is not None and USE_PEFT_BACKEND:
            unscale_lora_layers(self.text_encoder, lora_scale)
        return embeds

    def _prepare_controlnet_args(self, args: dict[str, Any]) -> dict[str, Any]:
        # diffusers' SD ControlNet pipeline has the same clip_skip crash (see encode_prompt): encode the prompts here.
        if args["clip_skip"] is None or args["prompt_embeds"] is not None:
            return args
        guidance = args["guidance_scale"] > 1 and self.unet.config.time_cond_proj_dim is None
        lora_scale = (args["cross_attention_kwargs"] or {}).get("scale")
        embeds, negative = self.encode_prompt(
            args["prompt"],
            self._execution_device,
            1,
            guidance,
            negative_prompt=args["negative_prompt"],
            negative_prompt_embeds=args["negative_prompt_embeds"],
            lora_scale=lora_scale,
            clip_skip=args["clip_skip"],
        )
        return {
            **args,
            "prompt": None,
            "negative_prompt": None,
            "clip_skip": None,
            "prompt_embeds": embeds,
            "negative_prompt_embeds": negative,
        }

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: PipelineImageInput | None = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        clip_skip: int | None = None,
        callback_on_step_end: Callable[[int, int], None] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature, never mutated
        control_image: PipelineImageInput | None = None,
        controlnet_conditioning_scale: float = 1.0,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        **kwargs,
    ):
        r"""Generate images: [`StableDiffusionPipeline.__call__`] (every argument, legacy ``callback`` /
        ``callback_steps`` in ``kwargs`` included), plus hfvision's additions below.

        ``{token}`` / ``{class}`` in ``prompt`` and ``negative_prompt`` expand to the pipeline's ``instance_token`` /
        ``class_noun``. With a ControlNet the call runs diffusers' [`StableDiffusionControlNetPipeline`] on this
        pipeline's modules (``callback_on_step_end`` then receives that pipeline).

        Args:
            control_image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list, *optional*): ControlNet
                condition, e.g. ``canny_image(photo)``; required when the pipeline has a ControlNet.
            controlnet_conditioning_scale (`float`, *optional*, defaults to 1.0): weight of the ControlNet residuals.
            control_guidance_start (`float`, *optional*, defaults to 0.0), control_guidance_end (`float`, *optional*,
                defaults to 1.0): fraction of the steps during which the ControlNet is applied.

        Returns:
            [`~pipelines.stable_diffusion.StableDiffusionPipelineOutput`] or a tuple, as the parent.
        """
        args = {k: v for k, v in locals().items() if k not in ("self", "kwargs")}
        return self._generate(StableDiffusionPipeline.__call__, StableDiffusionControlNetPipeline, args, kwargs)
