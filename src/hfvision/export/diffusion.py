"""Stable Diffusion / DreamBooth pipelines to ONNX (Optimum's layout) and back, generating on ONNX Runtime.

Export layout (what Optimum's ``ORTStableDiffusion*Pipeline`` loads)::

    model_index.json  text_encoder/  [text_encoder_2/]  unet/  vae_encoder/  vae_decoder/  tokenizer/  scheduler/
    (each model folder: model.onnx [+ model.onnx_data] + config.json)      export_report.json

The submodels and their configs come from Optimum's ``get_diffusion_models_for_export`` with hfvision's configs
(registered in the TasksManager). :class:`OrtStableDiffusionPipeline` is diffusers' own pipeline class with
ONNX Runtime-backed components that quack like the torch ones, so ``__call__`` (and its torch ``generator``) is
diffusers' unchanged: the same seed gives the same image as PyTorch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from ..utils.io import atomic_dir, atomic_write
from ..utils.logging import get_logger
from .configs import EXPORTER, register_with_optimum
from .errors import UnsupportedModelError, ValidationFailedError
from .runtime import ONNX_FILE, REPORT_FILE, OrtModel, resolve_model_dir

logger = get_logger(__name__)

SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
VALIDATION_PROMPTS = (
    "a photo of sks dog",
    "an astronaut riding a horse on the moon",
    "a cat on a laptop, studio light",
)
PIPELINE_ATOL = 1e-3


# ---- export ------------------------------------------------------------------------------------------------------
def _component_real_inputs(name: str, pipe, export_config):
    """Real validation inputs for one component: prompts, bundled photos, their latents and text embeddings."""
    import numpy as np
    import torch

    from ..data.samples import sample_image
    from .validate import VALIDATION_PHOTOS

    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)

    def photos(batch_size, size):
        images = [
            sample_image(VALIDATION_PHOTOS[i % len(VALIDATION_PHOTOS)]).resize(size[::-1]) for i in range(batch_size)
        ]
        array = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1.0 for im in images])
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    def prompts(batch_size):
        return [VALIDATION_PROMPTS[i % len(VALIDATION_PROMPTS)] for i in range(batch_size)]

    @torch.no_grad()
    def make(batch_size: int, size) -> dict:
        if name.startswith("text_encoder"):
            tokenizer = pipe.tokenizer_2 if name == "text_encoder_2" else pipe.tokenizer
            ids = tokenizer(
                prompts(batch_size), padding="max_length", max_length=size[0], truncation=True, return_tensors="pt"
            ).input_ids
            return {"input_ids": ids}
        if name == "vae_encoder":
            return {"sample": photos(batch_size, size)}
        latents = pipe.vae.encode(photos(batch_size, tuple(s * factor for s in size))).latent_dist.mean
        if name == "vae_decoder":
            return {"latent_sample": latents}
        # unet: noised photo latents at t=500, real prompt embeddings (and SDXL's pooled text + size ids)
        t = torch.tensor(500)
        noisy = pipe.scheduler.add_noise(latents * pipe.vae.config.scaling_factor, torch.randn_like(latents), t)
        encoded = pipe.encode_prompt(
            prompts(batch_size), device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        inputs = {"sample": noisy, "timestep": t.float(), "encoder_hidden_states": encoded[0]}
        if "text_embeds" in export_config.inputs:
            h, w = (s * factor for s in size)
            inputs["text_embeds"] = encoded[2]
            inputs["time_ids"] = torch.tensor([[h, w, 0, 0, h, w]] * batch_size, dtype=torch.float32)
        return inputs

    return make


def _check_same_images(pipe, export_dir: Path, atol: float) -> dict[str, Any]:
    """Generate with PyTorch and ONNX Runtime from the same seed; report the max pixel difference."""
    import numpy as np
    import torch

    ort_pipe = load_ort_diffusion_pipeline(export_dir)
    ort_pipe.set_progress_bar_config(disable=True)
    factor = ort_pipe.vae_scale_factor
    size = factor * 16
    kwargs = dict(
        prompt=VALIDATION_PROMPTS[0],
        num_inference_steps=2,
        guidance_scale=7.5,
        height=size,
        width=size,
        output_type="np",
    )
    saved = getattr(pipe, "_progress_bar_config", None)
    pipe.set_progress_bar_config(disable=True)
    try:
        ref = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0)).images
    finally:
        if saved is None:
            del pipe._progress_bar_config
        else:
            pipe._progress_bar_config = saved
    out = ort_pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0)).images
    diff = np.abs(np.asarray(ref, dtype=np.float64) - np.asarray(out, dtype=np.float64))
    return {
        "prompt": kwargs["prompt"],
        "seed": 0,
        "steps": 2,
        "size": [size, size],
        "atol": atol,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "passed": bool(diff.max() <= atol),
    }


def export_diffusion_onnx(
    pipeline_or_dir,
    output_dir: str | os.PathLike,
    opset: int | None = None,
    validate: bool = True,
    atol: float | None = None,
    overwrite: bool = False,
    pipeline_atol: float = PIPELINE_ATOL,
    external_data_threshold: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
):
    """Export a Stable Diffusion (1.x/2.x, incl. DreamBooth fine-tunes) or SDXL pipeline to ONNX.

    Each component is validated like a classifier (dummy + real inputs, two batch sizes, two resolutions), then
    the whole ONNX Runtime pipeline must reproduce PyTorch's image from the same seed within ``pipeline_atol``.

    Args:
        pipeline_or_dir: a diffusers pipeline, its directory, or a Hub repo id.
        output_dir (`str` or `os.PathLike`): export directory (must be empty unless ``overwrite``).
        opset (`int`, *optional*): ONNX opset (default 17).
        validate (`bool`, *optional*, defaults to `True`): run the strict validation.
        atol (`float`, *optional*): per-component tolerance (default: each config's).
        overwrite (`bool`, *optional*, defaults to `False`): replace a non-empty ``output_dir``.
        pipeline_atol (`float`, *optional*, defaults to 1e-3): tolerance on generated pixels (range [0, 1]).

    >>> export_diffusion_onnx("my-dreambooth-model", "dreambooth-onnx")  # doctest: +SKIP
    >>> OrtStableDiffusionPipeline.from_pretrained("dreambooth-onnx")("a photo of sks dog")  # doctest: +SKIP
    """
    import torch
    from diffusers import DiffusionPipeline
    from optimum.exporters.utils import get_diffusion_models_for_export

    from .core import (
        EXTERNAL_DATA_THRESHOLD,
        ExportResult,
        build_report,
        check_opset,
        check_output_dir,
        export_to_onnx,
    )
    from .validate import validate_onnx

    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)
    if isinstance(pipeline_or_dir, (str, os.PathLike)):
        name = str(pipeline_or_dir)
        pipe = DiffusionPipeline.from_pretrained(
            resolve_model_dir(pipeline_or_dir, revision, token), dtype=torch.float32
        )
    else:
        pipe, name = pipeline_or_dir, type(pipeline_or_dir).__name__
    if type(pipe).__name__ not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{type(pipe).__name__} is not supported for ONNX export; supported "
            f"pipelines: {', '.join(SUPPORTED_PIPELINES)}"
        )
    register_with_optimum()
    components = get_diffusion_models_for_export(pipe, exporter=EXPORTER)
    opset = max(check_opset(opset, cfg, key) for key, (_, cfg) in components.items())
    threshold = EXTERNAL_DATA_THRESHOLD if external_data_threshold is None else external_data_threshold
    files: dict[str, list[Path]] = {}
    reports: dict[str, Any] = {}
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        for key, (model, cfg) in components.items():
            files[key] = export_to_onnx(model, cfg, tmp / key / ONNX_FILE, opset, external_data_threshold=threshold)
            if hasattr(model, "save_config"):  # diffusers UNet / VAE
                model.save_config(tmp / key)
            else:  # transformers text encoders
                model.config.save_pretrained(tmp / key)
            if validate:
                reports[key] = validate_onnx(
                    model,
                    cfg,
                    tmp / key / ONNX_FILE,
                    atol=atol,
                    name=key,
                    real_inputs=_component_real_inputs(key, pipe, cfg),
                    real_inputs_name="prompts" if key.startswith("text") else "photos",
                )
        for key in ("tokenizer", "tokenizer_2", "scheduler"):
            if getattr(pipe, key, None) is not None:
                getattr(pipe, key).save_pretrained(tmp / key)
        pipe.save_config(tmp)  # model_index.json, as Optimum's ORT pipelines expect
        validation: dict[str, Any] | None = None
        if validate:
            failing = [r for r in reports.values() if not r.passed]
            if failing:
                details = "\n".join(f"[{r.model}]\n{r.summary(only_failures=True)}" for r in failing)
                raise ValidationFailedError(
                    f"ONNX validation FAILED for {name}: {len(failing)} component(s) differ "
                    f"from PyTorch; nothing was written.\n{details}",
                    report=reports,
                )
            images = _check_same_images(pipe, tmp, pipeline_atol)
            validation = {
                "passed": images["passed"],
                "components": {k: r.to_dict() for k, r in reports.items()},
                "pipeline": images,
            }
            if not images["passed"]:
                raise ValidationFailedError(
                    f"ONNX validation FAILED for {name}: same-seed images differ from PyTorch by "
                    f"{images['max_abs_diff']:.2e} > {pipeline_atol:g}; nothing was written.",
                    report=validation,
                )
        report = build_report(
            "text-to-image",
            name,
            "diffusers",
            {k: c for k, (_, c) in components.items()},
            opset,
            True,
            files,
            tmp,
            validation,
        )
        report["pipeline_class"] = type(pipe).__name__
        with atomic_write(tmp / REPORT_FILE, "w") as f:
            json.dump(report, f, indent=2)
    logger.info(
        "ONNX export of %s written to %s%s",
        name,
        output_dir,
        " (validation passed)" if validate else " (NOT validated)",
    )
    onnx_files = [output_dir / f.relative_to(tmp) for fs in files.values() for f in fs]
    return ExportResult(output_dir, report, validation or None, onnx_files)


# ---- ONNX Runtime components ----------------------------------------------------------------------------------------
def _frozen_config(path: Path):
    from diffusers.configuration_utils import FrozenDict

    return FrozenDict(json.loads((path / "config.json").read_text()))


class OrtCLIPTextModel(OrtModel):
    """ONNX Runtime CLIP text encoder returning transformers' output classes (``[0]`` is what SD uses)."""

    main_input_name = "input_ids"

    def forward(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool | None = None,
        return_dict: bool = True,
        **kwargs,
    ):
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.clip.modeling_clip import CLIPTextModelOutput

        if attention_mask is not None and not bool(torch.as_tensor(attention_mask).all()):
            raise ValueError("the ONNX text encoder was exported without attention_mask (as SD uses CLIP)")
        out = {k: torch.from_numpy(v) for k, v in self.run({"input_ids": input_ids}).items()}
        hidden = None
        if output_hidden_states:
            hidden = tuple(out[n] for n in self.output_names if n.startswith("hidden_states."))
        if "text_embeds" in out:
            result = CLIPTextModelOutput(
                text_embeds=out["text_embeds"], last_hidden_state=out["last_hidden_state"], hidden_states=hidden
            )
        else:
            result = BaseModelOutputWithPooling(
                last_hidden_state=out["last_hidden_state"], pooler_output=out["pooler_output"], hidden_states=hidden
            )
        return result if return_dict else result.to_tuple()


class OrtUNet(OrtModel):
    """ONNX Runtime ``UNet2DConditionModel``: same call signature subset as the torch UNet in SD/SDXL pipelines."""

    main_input_name = "sample"

    def __init__(self, path, config=None, **kwargs):
        from types import SimpleNamespace

        super().__init__(path, config=config, **kwargs)
        dim = (config or {}).get("projection_class_embeddings_input_dim")
        # SDXL's pipeline checks unet.add_embedding.linear_1.in_features against the size-id embedding width
        self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(in_features=dim))

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        timestep_cond=None,
        added_cond_kwargs=None,
        cross_attention_kwargs=None,
        return_dict: bool = True,
        **kwargs,
    ):
        import torch
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        unsupported = [k for k, v in kwargs.items() if v is not None]
        if cross_attention_kwargs or unsupported:
            raise ValueError(f"the ONNX UNet does not take {sorted(unsupported) or ['cross_attention_kwargs']}")
        t = torch.as_tensor(timestep)
        if t.ndim:
            if not bool((t == t.flatten()[0]).all()):
                raise ValueError("the ONNX UNet takes one timestep for the whole batch")
            t = t.flatten()[0]
        feed = {"sample": sample, "timestep": t, "encoder_hidden_states": encoder_hidden_states}
        feed.update({k: v for k, v in (added_cond_kwargs or {}).items() if k in self.input_names})
        if timestep_cond is not None:
            feed["timestep_cond"] = timestep_cond
        out = torch.from_numpy(self.run(feed)["out_sample"]).to(self.device)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


class OrtAutoencoderKL:
    """ONNX Runtime ``AutoencoderKL`` made of Optimum's ``vae_encoder`` (optional) and ``vae_decoder`` models."""

    def __init__(self, decoder: OrtModel, encoder: OrtModel | None, config):
        self.decoder, self.encoder, self.config = decoder, encoder, config
        self.device, self.dtype = decoder.device, decoder.dtype

    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def modules(self):
        return iter((self,))

    def parameters(self):
        return iter(())

    def encode(self, x, return_dict: bool = True):
        import torch
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
        from diffusers.models.modeling_outputs import AutoencoderKLOutput

        if self.encoder is None:
            raise ValueError("this export has no vae_encoder/model.onnx")
        params = torch.from_numpy(self.encoder.run({"sample": x})["latent_parameters"])
        dist = DiagonalGaussianDistribution(params)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z, return_dict: bool = True, generator=None):
        import torch
        from diffusers.models.autoencoders.vae import DecoderOutput

        sample = torch.from_numpy(self.decoder.run({"latent_sample": z})["sample"])
        return DecoderOutput(sample=sample) if return_dict else (sample,)


def load_ort_components(
    model_dir: str | os.PathLike, provider=None, session_options=None, intra_op_num_threads: int | None = None
) -> dict[str, Any]:
    """The ONNX Runtime components (+ tokenizers, scheduler) of an export, keyed like the diffusers pipeline."""
    from diffusers import SchedulerMixin
    from transformers import AutoConfig, CLIPTokenizer

    model_dir = Path(model_dir)
    index = json.loads((model_dir / "model_index.json").read_text())
    kw = dict(provider=provider, session_options=session_options, intra_op_num_threads=intra_op_num_threads)
    components: dict[str, Any] = {}
    for key in ("text_encoder", "text_encoder_2"):
        if (model_dir / key / ONNX_FILE).is_file():
            components[key] = OrtCLIPTextModel(
                model_dir / key / ONNX_FILE, AutoConfig.from_pretrained(model_dir / key), **kw
            )
    for key in ("tokenizer", "tokenizer_2"):
        if (model_dir / key).is_dir():
            components[key] = CLIPTokenizer.from_pretrained(model_dir / key)
    components["unet"] = OrtUNet(model_dir / "unet" / ONNX_FILE, _frozen_config(model_dir / "unet"), **kw)
    encoder = None
    if (model_dir / "vae_encoder" / ONNX_FILE).is_file():
        encoder = OrtModel(model_dir / "vae_encoder" / ONNX_FILE, **kw)
    decoder = OrtModel(model_dir / "vae_decoder" / ONNX_FILE, **kw)
    components["vae"] = OrtAutoencoderKL(decoder, encoder, _frozen_config(model_dir / "vae_decoder"))
    scheduler_class = index.get("scheduler", [None, "DDIMScheduler"])[1]
    import diffusers

    scheduler_cls = getattr(diffusers, scheduler_class, None)
    if scheduler_cls is None or not issubclass(scheduler_cls, SchedulerMixin):
        raise ValueError(f"{model_dir}: unknown scheduler class {scheduler_class!r} in model_index.json")
    components["scheduler"] = scheduler_cls.from_pretrained(model_dir / "scheduler")
    return components


class OrtStableDiffusionPipeline(StableDiffusionPipeline):
    """diffusers' ``StableDiffusionPipeline`` running on ONNX Runtime components (diffusers' own ``__call__``).

    >>> pipe = OrtStableDiffusionPipeline.from_pretrained("dreambooth-onnx")  # doctest: +SKIP
    >>> image = pipe("a photo of sks dog", generator=torch.Generator().manual_seed(0)).images[0]  # doctest: +SKIP
    """

    @classmethod
    def from_pretrained(
        cls, model, provider=None, session_options=None, intra_op_num_threads=None, revision=None, token=None, **kwargs
    ):
        model_dir = resolve_model_dir(model, revision=revision, token=token)
        parts = load_ort_components(model_dir, provider, session_options, intra_op_num_threads)
        return cls(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def __call__(self, *args, clip_skip: int | None = None, **kwargs):
        if clip_skip:
            raise ValueError("clip_skip is not supported by the ONNX Runtime pipeline")
        return super().__call__(*args, **kwargs)


class OrtStableDiffusionXLPipeline(StableDiffusionXLPipeline):
    """diffusers' ``StableDiffusionXLPipeline`` running on ONNX Runtime components (diffusers' own ``__call__``)."""

    @classmethod
    def from_pretrained(
        cls, model, provider=None, session_options=None, intra_op_num_threads=None, revision=None, token=None, **kwargs
    ):
        model_dir = resolve_model_dir(model, revision=revision, token=token)
        parts = load_ort_components(model_dir, provider, session_options, intra_op_num_threads)
        index = json.loads((model_dir / "model_index.json").read_text())
        return cls(
            **parts,
            force_zeros_for_empty_prompt=index.get("force_zeros_for_empty_prompt", True),
            add_watermarker=False,
        )

    def __call__(self, *args, clip_skip: int | None = None, **kwargs):
        if clip_skip:
            raise ValueError("clip_skip is not supported by the ONNX Runtime pipeline")
        return super().__call__(*args, **kwargs)


def load_ort_diffusion_pipeline(model, **kwargs):
    """The ONNX Runtime SD or SDXL pipeline for an export directory / Hub repo (class from ``model_index.json``)."""
    model_dir = resolve_model_dir(model, kwargs.pop("revision", None), kwargs.pop("token", None))
    index = json.loads((model_dir / "model_index.json").read_text())
    xl = index.get("_class_name", "").startswith("StableDiffusionXL")
    return (OrtStableDiffusionXLPipeline if xl else OrtStableDiffusionPipeline).from_pretrained(model_dir, **kwargs)
