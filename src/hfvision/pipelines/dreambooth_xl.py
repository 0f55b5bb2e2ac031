"""SDXL DreamBooth pipeline: diffusers' `StableDiffusionXLPipeline` with the DreamBooth conveniences.

SDXL generation is delegated, not re-implemented: `DreamBoothXLPipeline` *is* a `StableDiffusionXLPipeline` (same
``__call__``, outputs, callbacks, offloading), plus what `DreamBoothPipeline` adds — ``instance_token`` /
``class_noun`` / ``family`` in the config, ``{token}`` / ``{class}`` expansion in all four prompt arguments,
`from_components`, and `save_pretrained` / `push_to_hub` shipping the code (load it elsewhere with
``DiffusionPipeline.from_pretrained(repo, custom_pipeline="dreambooth_xl", trust_remote_code=True)``).

With a ControlNet (``controlnet=...``, checked against the UNet) a call runs diffusers'
`StableDiffusionXLControlNetPipeline` on the same modules; ``callback_on_step_end`` then receives that pipeline.

Self-contained like ``dreambooth.py``: only torch/transformers/diffusers and the sibling files it imports
(``dreambooth_utils.py``, ``controlnet_utils.py``), which `save_pretrained` ships with it.

>>> from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
>>> from hfvision.testing import tiny_sd_pipeline
>>> pipe = DreamBoothXLPipeline.from_components(tiny_sd_pipeline("sdxl"), instance_token="sks", class_noun="cat")
>>> image = pipe("{token} {class}", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.image_processor import PipelineImageInput
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)

from .controlnet_utils import check_controlnet_compatible
from .dreambooth_utils import DreamBoothMixin


class DreamBoothXLPipeline(DreamBoothMixin, StableDiffusionXLPipeline):
    r"""SDXL text-to-image for a DreamBooth subject (see the module docstring); arguments as
    `StableDiffusionXLPipeline`, plus ``controlnet``, ``instance_token``, ``class_noun`` and ``family``."""

    _code_files = ("dreambooth_xl.py", "dreambooth_utils.py", "controlnet_utils.py")
    _optional_components = [*StableDiffusionXLPipeline._optional_components, "controlnet"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        tokenizer_2: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        image_encoder: CLIPVisionModelWithProjection = None,
        feature_extractor: CLIPImageProcessor = None,
        controlnet: ControlNetModel | None = None,
        force_zeros_for_empty_prompt: bool = True,
        add_watermarker: bool | None = None,
        instance_token: str | None = None,
        class_noun: str | None = None,
        family: str | None = None,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
            add_watermarker=add_watermarker,
        )
        if controlnet is not None and unet is not None:
            check_controlnet_compatible(controlnet, unet)
        self.register_modules(controlnet=controlnet)
        self.register_to_config(instance_token=instance_token, class_noun=class_noun, family=family or "sdxl")

    def __call__(
        self,
        prompt: str | list[str] | None = None,
        prompt_2: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        control_image: PipelineImageInput | None = None,
        controlnet_conditioning_scale: float = 1.0,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        **kwargs: Any,
    ):
        """Generate images; all `StableDiffusionXLPipeline.__call__` arguments are accepted. ``{token}`` and
        ``{class}`` expand in the prompts; ``control_image`` is required when the pipeline has a ControlNet."""
        prompts = {
            "prompt": self.expand_prompt(prompt),
            "prompt_2": self.expand_prompt(prompt_2),
            "negative_prompt": self.expand_prompt(negative_prompt),
            "negative_prompt_2": self.expand_prompt(negative_prompt_2),
        }
        if self.controlnet is None:
            if control_image is not None:
                raise ValueError(
                    "`control_image` was given but the pipeline has no ControlNet; pass controlnet=... first"
                )
            return super().__call__(**prompts, **kwargs)
        check_controlnet_compatible(self.controlnet, self.unet)
        if control_image is None:
            raise ValueError("this pipeline has a ControlNet: pass `control_image` (e.g. canny_image(photo))")
        return self.controlnet_pipeline()(
            **prompts,
            image=control_image,
            controlnet_conditioning_scale=controlnet_conditioning_scale,
            control_guidance_start=control_guidance_start,
            control_guidance_end=control_guidance_end,
            **kwargs,
        )

    def controlnet_pipeline(self) -> StableDiffusionXLControlNetPipeline:
        """diffusers' SDXL ControlNet pipeline over this pipeline's modules (shared, not copied)."""
        modules = {k: v for k, v in self.components.items()}
        pipe = StableDiffusionXLControlNetPipeline(
            **modules,
            force_zeros_for_empty_prompt=self.config.force_zeros_for_empty_prompt,
            add_watermarker=self.watermark is not None,
        )
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe
