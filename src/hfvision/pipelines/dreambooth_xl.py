"""SDXL DreamBooth pipeline: diffusers' `StableDiffusionXLPipeline` with the DreamBooth conveniences.

SDXL generation is delegated, not re-implemented: `DreamBoothXLPipeline` *is* a `StableDiffusionXLPipeline` (same
``__call__``, outputs, callbacks, offloading), plus what `DreamBoothPipeline` adds — ``instance_token`` /
``class_noun`` / ``family`` in the config, ``{token}`` / ``{class}`` expansion in all four prompt arguments,
`from_components`, and `save_pretrained` / `push_to_hub` shipping the code (load it elsewhere, without hfvision,
with ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)``).

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

from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
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
    `StableDiffusionXLPipeline`, plus ``controlnet``, ``instance_token``, ``class_noun`` and ``family``.

    >>> pipe = DreamBoothXLPipeline.from_pretrained("path/to/dreambooth-xl-output")  # doctest: +SKIP
    >>> image = pipe("a photo of {token} {class} in Paris", num_inference_steps=30).images[0]  # doctest: +SKIP
    """

    _code_files = ("dreambooth_xl.py", "dreambooth_utils.py", "controlnet_utils.py")
    _optional_components = [*StableDiffusionXLPipeline._optional_components, "controlnet"]
    _family = "sdxl"
    _check_controlnet = staticmethod(check_controlnet_compatible)

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
        concepts: list[dict] | None = None,
    ):
        self._init_pipeline(locals())

    def _controlnet_pipeline_kwargs(self) -> dict[str, Any]:
        return {"add_watermarker": self.watermark is not None}

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = None,
        prompt_2: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        timesteps: list[int] = None,
        sigmas: list[float] = None,
        denoising_end: float | None = None,
        guidance_scale: float = 5.0,
        negative_prompt: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        num_images_per_prompt: int | None = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: PipelineImageInput | None = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        original_size: tuple[int, int] | None = None,
        crops_coords_top_left: tuple[int, int] = (0, 0),
        target_size: tuple[int, int] | None = None,
        negative_original_size: tuple[int, int] | None = None,
        negative_crops_coords_top_left: tuple[int, int] = (0, 0),
        negative_target_size: tuple[int, int] | None = None,
        clip_skip: int | None = None,
        callback_on_step_end: Callable[[int, int], None] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature, never mutated
        control_image: PipelineImageInput | None = None,
        controlnet_conditioning_scale: float = 1.0,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        **kwargs,
    ):
        r"""Generate images: [`StableDiffusionXLPipeline.__call__`] (every argument), plus hfvision's additions.

        ``{token}`` / ``{class}`` expand in ``prompt``, ``prompt_2``, ``negative_prompt`` and ``negative_prompt_2``.
        With a ControlNet the call runs diffusers' [`StableDiffusionXLControlNetPipeline`] on this pipeline's modules
        (``callback_on_step_end`` then receives that pipeline; ``guidance_rescale`` is not available there).

        Args:
            control_image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list, *optional*): ControlNet
                condition; required when the pipeline has a ControlNet.
            controlnet_conditioning_scale (`float`, *optional*, defaults to 1.0): weight of the ControlNet residuals.
            control_guidance_start (`float`, *optional*, defaults to 0.0), control_guidance_end (`float`, *optional*,
                defaults to 1.0): fraction of the steps during which the ControlNet is applied.

        Returns:
            [`~pipelines.stable_diffusion_xl.StableDiffusionXLPipelineOutput`] or a tuple, as the parent.
        """
        args = {k: v for k, v in locals().items() if k not in ("self", "kwargs")}
        return self._generate(StableDiffusionXLPipeline.__call__, StableDiffusionXLControlNetPipeline, args, kwargs)
