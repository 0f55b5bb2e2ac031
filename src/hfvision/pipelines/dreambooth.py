"""Text-to-image generation with a DreamBooth-trained Stable Diffusion 1.x / 2.x subject, with optional ControlNet.

`DreamBoothPipeline` is a `diffusers.DiffusionPipeline` built like `StableDiffusionPipeline` (no safety checker) that
remembers the trained identifier (``instance_token``, ``class_noun``) and base family in its config, expands
``{token}`` / ``{class}`` in prompts, and takes an optional ControlNet (``control_image``). With the same components,
scheduler and seed it produces the same images as `StableDiffusionPipeline` / `StableDiffusionControlNetPipeline`.

This file is self-contained on purpose: it imports only torch, transformers, diffusers and its siblings
``dreambooth_utils.py`` and ``controlnet_utils.py``. `save_pretrained` / `push_to_hub` copy the three files next to
the weights, so in a process
without hfvision ``DiffusionPipeline.from_pretrained(repo, custom_pipeline="dreambooth", trust_remote_code=True)``
loads this class (diffusers itself does not copy a custom pipeline's code).

>>> from hfvision.pipelines.dreambooth import DreamBoothPipeline
>>> from hfvision.testing import tiny_sd_pipeline
>>> pipe = DreamBoothPipeline.from_components(tiny_sd_pipeline("sd1"), instance_token="sks", class_noun="dog")
>>> image = pipe("a photo of {token} {class}", num_inference_steps=2, output_type="np").images[0]
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg, retrieve_timesteps
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .controlnet_utils import check_controlnet_compatible
from .dreambooth_utils import DreamBoothMixin, expand_prompt, infer_family, nearest_multiples

__all__ = ["DreamBoothPipeline", "expand_prompt"]

# A plain stdlib logger under the "hfvision" tree (same as hfvision.utils.get_logger) so this file needs no hfvision.
logger = logging.getLogger("hfvision.pipelines.dreambooth")


class DreamBoothPipeline(
    DreamBoothMixin,
    DiffusionPipeline,
    StableDiffusionMixin,
    TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
):
    r"""Stable Diffusion 1.x / 2.x text-to-image for a DreamBooth subject, with an optional ControlNet.

    Args:
        vae ([`AutoencoderKL`]): decodes latents to images.
        text_encoder ([`~transformers.CLIPTextModel`]): encodes prompts.
        tokenizer ([`~transformers.CLIPTokenizer`]): tokenizes prompts.
        unet ([`UNet2DConditionModel`]): denoises latents.
        scheduler ([`SchedulerMixin`]): e.g. [`DDIMScheduler`], [`PNDMScheduler`], [`DPMSolverMultistepScheduler`].
        controlnet ([`ControlNetModel`], *optional*): conditions generation on ``control_image``; must match the UNet
            (checked here and before every call).
        instance_token (`str`, *optional*): the trained identifier (e.g. ``"sks"``) that ``{token}`` expands to.
        class_noun (`str`, *optional*): the subject's class (e.g. ``"dog"``) that ``{class}`` expands to.
        family (`str`, *optional*): base family, ``"sd1"`` or ``"sd2"`` (inferred from the UNet when omitted).

    Example:

    >>> pipe = DreamBoothPipeline.from_pretrained("path/to/dreambooth-output")  # doctest: +SKIP
    >>> image = pipe("a photo of {token} {class} in Paris", num_inference_steps=30).images[0]  # doctest: +SKIP
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    # Guidance embedding for guidance-distilled UNets (``time_cond_proj_dim``): diffusers' own function, reused.
    get_guidance_scale_embedding = StableDiffusionPipeline.get_guidance_scale_embedding
    _optional_components = ["controlnet"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "control_image"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        controlnet: ControlNetModel | None = None,
        instance_token: str | None = None,
        class_noun: str | None = None,
        family: str | None = None,
    ):
        super().__init__()
        if unet is not None and infer_family(unet) == "sdxl":
            raise ValueError("this UNet is SDXL-shaped (text_time conditioning); use DreamBoothXLPipeline")
        if controlnet is not None and unet is not None:
            check_controlnet_compatible(controlnet, unet)
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            controlnet=controlnet,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        self.register_to_config(
            instance_token=instance_token, class_noun=class_noun, family=family or infer_family(unet)
        )

    # -- properties read by the denoising loop (same names as diffusers' pipelines) --
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        return self._guidance_rescale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def default_size(self) -> tuple[int, int]:
        """(height, width) the UNet was configured for, in pixels."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    def check_inputs(
        self,
        prompt,
        height: int | None,
        width: int | None,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        control_image=None,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> None:
        for name, value in (("height", height), ("width", width)):
            if value is not None and (not isinstance(value, int) or value <= 0 or value % 8 != 0):
                low, high = nearest_multiples(int(value), 8) if isinstance(value, int) and value > 0 else (512, 520)
                raise ValueError(f"{name}={value!r} must be a positive multiple of 8; try {low} or {high}")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"callback_on_step_end_tensor_inputs {unknown} are not available; choose from {self._callback_tensor_inputs}"
                )
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of `prompt` and `prompt_embeds`")
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise ValueError(f"`prompt` must be a str or a list of str, not {type(prompt).__name__}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass at most one of `negative_prompt` and `negative_prompt_embeds`")
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                    f"{tuple(negative_prompt_embeds.shape)} must have the same shape"
                )
        if self.controlnet is None and control_image is not None:
            raise ValueError("`control_image` was given but the pipeline has no ControlNet; pass controlnet=... first")
        if self.controlnet is not None:
            check_controlnet_compatible(self.controlnet, self.unet)
            if control_image is None:
                raise ValueError("this pipeline has a ControlNet: pass `control_image` (e.g. canny_image(photo))")
            if not 0.0 <= control_guidance_start < control_guidance_end <= 1.0:
                raise ValueError(
                    f"need 0 <= control_guidance_start < control_guidance_end <= 1, got {control_guidance_start} "
                    f"and {control_guidance_end}"
                )

    def encode_prompt(
        self,
        prompt,
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text embeddings for the prompt and, with guidance, the negative prompt (``""`` when not given), each
        repeated ``num_images_per_prompt`` times. Prompts longer than the tokenizer's limit are truncated with a
        warning, as in diffusers."""
        if lora_scale is not None and USE_PEFT_BACKEND:
            self._lora_scale = lora_scale
            scale_lora_layers(self.text_encoder, lora_scale)
        batch_size = 1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        if prompt_embeds is None:
            prompt = self.maybe_convert_prompt(prompt, self.tokenizer)
            prompt_embeds = self._encode_text(prompt, device, clip_skip, warn_truncation=True)
        dtype = self.text_encoder.dtype if self.text_encoder is not None else self.unet.dtype
        prompt_embeds = prompt_embeds.to(dtype=dtype, device=device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            if negative_prompt is None:
                uncond = [""] * batch_size
            elif isinstance(negative_prompt, str):
                uncond = [negative_prompt] * batch_size
            else:
                uncond = list(negative_prompt)
            if len(uncond) != batch_size:
                raise ValueError(
                    f"got {len(uncond)} negative prompts for {batch_size} prompts; pass one or the same number"
                )
            uncond = self.maybe_convert_prompt(uncond, self.tokenizer)
            negative_prompt_embeds = self._encode_text(uncond, device, None, warn_truncation=False)
        if do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_embeds.to(dtype=dtype, device=device)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)

        if lora_scale is not None and USE_PEFT_BACKEND and self.text_encoder is not None:
            unscale_lora_layers(self.text_encoder, lora_scale)
        return prompt_embeds, negative_prompt_embeds

    def _encode_text(self, texts, device, clip_skip: int | None, warn_truncation: bool) -> torch.Tensor:
        max_length = self.tokenizer.model_max_length
        inputs = self.tokenizer(
            texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        if warn_truncation:
            full = self.tokenizer(texts, padding="longest", return_tensors="pt").input_ids
            if full.shape[-1] > inputs.input_ids.shape[-1]:
                removed = self.tokenizer.batch_decode(full[:, max_length - 1 : -1])
                logger.warning(
                    "The following part of your input was truncated because CLIP can only handle sequences up to "
                    "%d tokens: %s", max_length, removed
                )  # fmt: skip
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        mask = inputs.attention_mask.to(device) if use_mask else None
        if clip_skip is None:
            return self.text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
        hidden = self.text_encoder(inputs.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
        return self.text_encoder.text_model.final_layer_norm(hidden[-1][-(clip_skip + 1)])

    def prepare_control_image(
        self, image, height, width, batch_size, num_images_per_prompt, device, dtype, do_classifier_free_guidance
    ) -> torch.Tensor:
        """ControlNet condition in [0, 1], resized to (height, width), one per generated image (x2 with guidance)."""
        image = self.control_image_processor.preprocess(image, height=height, width=width).to(dtype=torch.float32)
        repeat_by = batch_size if image.shape[0] == 1 else num_images_per_prompt
        image = image.repeat_interleave(repeat_by, dim=0).to(device=device, dtype=dtype)
        return torch.cat([image] * 2) if do_classifier_free_guidance else image

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator, latents=None):
        shape = (batch_size, num_channels_latents, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"got {len(generator)} generators for {batch_size} images; pass one per image or a single one"
            )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device)
        return latents * self.scheduler.init_noise_sigma

    def prepare_extra_step_kwargs(self, generator, eta: float) -> dict[str, Any]:
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        extra = {}
        if "eta" in step_params:
            extra["eta"] = eta
        if "generator" in step_params:
            extra["generator"] = generator
        return extra

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
        control_image: PipelineImageInput | None = None,
        controlnet_conditioning_scale: float = 1.0,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        clip_skip: int | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature, never mutated
    ):
        r"""Generate images.

        Args:
            prompt (`str` or `list[str]`, *optional*): what to draw; ``{token}`` / ``{class}`` expand to the trained
                identifier and class. Use ``prompt_embeds`` instead to pass embeddings.
            height (`int`, *optional*), width (`int`, *optional*): image size in pixels, multiples of 8 (default: the
                UNet's sample size, or the control image's size).
            num_inference_steps (`int`, *optional*, defaults to 50): denoising steps.
            timesteps (`list[int]`, *optional*), sigmas (`list[float]`, *optional*): custom schedule.
            guidance_scale (`float`, *optional*, defaults to 7.5): classifier-free guidance weight; the conditional
                and unconditional predictions come from one batched UNet call.
            negative_prompt (`str` or `list[str]`, *optional*): what to avoid (placeholders expand too).
            num_images_per_prompt (`int`, *optional*, defaults to 1): images per prompt.
            eta (`float`, *optional*, defaults to 0.0): DDIM's eta.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): for reproducible results.
            latents (`torch.Tensor`, *optional*): starting noise.
            prompt_embeds, negative_prompt_embeds (`torch.Tensor`, *optional*): precomputed text embeddings.
            control_image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list, *optional*): ControlNet
                condition, e.g. ``canny_image(photo)``; required when the pipeline has a ControlNet.
            controlnet_conditioning_scale (`float`, *optional*, defaults to 1.0): weight of the ControlNet residuals.
            control_guidance_start, control_guidance_end (`float`, *optional*): fraction of the steps during which
                the ControlNet is applied.
            output_type (`str`, *optional*, defaults to ``"pil"``): ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict (`bool`, *optional*, defaults to `True`): return a `StableDiffusionPipelineOutput`.
            cross_attention_kwargs (`dict`, *optional*): passed to the attention processors (``{"scale": s}`` scales
                LoRA layers).
            guidance_rescale (`float`, *optional*, defaults to 0.0): rescale of the guided prediction
                (arXiv:2305.08891), useful with zero-terminal-SNR schedules.
            clip_skip (`int`, *optional*): number of final CLIP layers to skip.
            callback_on_step_end (`Callable`, *optional*): ``fn(pipe, step, timestep, callback_kwargs) -> dict``
                called after each step; set ``pipe._interrupt = True`` inside it to stop early.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*): tensors passed in ``callback_kwargs``
                (from ``_callback_tensor_inputs``).

        Returns:
            `StableDiffusionPipelineOutput` (``nsfw_content_detected`` is ``None``: no safety checker) or a tuple
            ``(images, None)``.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        use_control = self.controlnet is not None

        # 1. Check inputs
        self.check_inputs(
            prompt, height, width, negative_prompt, prompt_embeds, negative_prompt_embeds, control_image,
            control_guidance_start, control_guidance_end, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        if not use_control and not (height and width):
            default_height, default_width = self.default_size()
            height, width = height or default_height, width or default_width
        prompt, negative_prompt = self.expand_prompt(prompt), self.expand_prompt(negative_prompt)
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        batch_size = 1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        device = self._execution_device

        # 2. Encode prompt (unconditional + conditional embeddings in one batch for a single UNet call per step)
        lora_scale = cross_attention_kwargs.get("scale") if cross_attention_kwargs else None
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, lora_scale=lora_scale,
            clip_skip=clip_skip,
        )  # fmt: skip
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 3. Prepare the ControlNet condition (its size fixes the output size)
        if use_control:
            control_image = self.prepare_control_image(
                control_image, height, width, batch_size * num_images_per_prompt, num_images_per_prompt, device,
                self.controlnet.dtype, self.do_classifier_free_guidance,
            )  # fmt: skip
            height, width = control_image.shape[-2:]

        # 4. Prepare timesteps
        timesteps, num_inference_steps = retrieve_timesteps(
            self.scheduler, num_inference_steps, device, timesteps, sigmas
        )
        self._num_timesteps = len(timesteps)

        # 5. Prepare latents
        latents = self.prepare_latents(
            batch_size * num_images_per_prompt, self.unet.config.in_channels, height, width, prompt_embeds.dtype,
            device, generator, latents,
        )  # fmt: skip
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        timestep_cond = None
        if self.unet.config.time_cond_proj_dim is not None:
            scale = torch.tensor(self.guidance_scale - 1).repeat(batch_size * num_images_per_prompt)
            timestep_cond = self.get_guidance_scale_embedding(scale, embedding_dim=self.unet.config.time_cond_proj_dim)
            timestep_cond = timestep_cond.to(device=device, dtype=latents.dtype)

        # 6. Denoising loop
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                residuals = {}
                if use_control:
                    keep = not (
                        i / len(timesteps) < control_guidance_start or (i + 1) / len(timesteps) > control_guidance_end
                    )
                    down, mid = self.controlnet(
                        latent_model_input, t, encoder_hidden_states=prompt_embeds, controlnet_cond=control_image,
                        conditioning_scale=controlnet_conditioning_scale * float(keep), return_dict=False,
                    )  # fmt: skip
                    residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
                noise_pred = self.unet(
                    latent_model_input, t, encoder_hidden_states=prompt_embeds, timestep_cond=timestep_cond,
                    cross_attention_kwargs=self.cross_attention_kwargs, return_dict=False, **residuals,
                )[0]  # fmt: skip
                if self.do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
                    if self.guidance_rescale > 0.0:
                        noise_pred = rescale_noise_cfg(
                            noise_pred, noise_pred_text, guidance_rescale=self.guidance_rescale
                        )
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    available = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                        "control_image": control_image,
                    }
                    outputs = callback_on_step_end(
                        self, i, t, {k: available[k] for k in callback_on_step_end_tensor_inputs}
                    )
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                    control_image = outputs.pop("control_image", control_image)
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 7. Decode
        if output_type == "latent":
            image = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False, generator=generator)[
                0
            ]
            image = self.image_processor.postprocess(image, output_type=output_type)
        self.maybe_free_model_hooks()

        # 8. Output
        if not return_dict:
            return (image, None)
        return StableDiffusionPipelineOutput(images=image, nsfw_content_detected=None)
