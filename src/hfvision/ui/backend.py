"""The web UI's work, without Gradio: loading/caching models, generating, classifying, drawing boxes.

Kept apart from the Gradio layout so it is testable (and reusable) without a browser.

>>> studio = GenerateBackend()
>>> images, seed = studio.generate(GenerateRequest(model="path/to/dreambooth-output", prompt="a photo of {token} {class}"))
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)

NO_CONTROLNET = "none"


def model_family(source: str | None) -> str | None:
    """Base family (``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"flux"``) of a registry key or a local diffusers folder, read
    from configs only (nothing is loaded); ``None`` when it cannot be told."""
    if not source:
        return None
    from ..models.registry import BASE_MODELS

    if source in BASE_MODELS:
        return BASE_MODELS[source].family
    transformer_config = Path(source) / "transformer" / "config.json"
    if transformer_config.is_file():
        name = json.loads(transformer_config.read_text(encoding="utf-8")).get("_class_name")
        return {"FluxTransformer2DModel": "flux", "SD3Transformer2DModel": "sd3"}.get(name)
    unet_config = Path(source) / "unet" / "config.json"
    if unet_config.is_file():
        config = json.loads(unet_config.read_text(encoding="utf-8"))
        if config.get("addition_embed_type") == "text_time":
            return "sdxl"
        return "sd2" if config.get("use_linear_projection") else "sd1"
    return None


def default_size(source: str | None, fallback: int = 512) -> int:
    """Native image size of a registry key or local diffusers folder (UNet sample size x VAE scale)."""
    if not source:
        return fallback
    from ..models.registry import BASE_MODELS

    if source in BASE_MODELS:
        return BASE_MODELS[source].resolution
    unet_config, vae_config = Path(source) / "unet" / "config.json", Path(source) / "vae" / "config.json"
    if not unet_config.is_file():  # Flux.1 / SD3: the transformer's sample size (Flux's pipeline default: 128)
        unet_config = Path(source) / "transformer" / "config.json"
    if unet_config.is_file() and vae_config.is_file():
        config = json.loads(unet_config.read_text(encoding="utf-8"))
        sample = config.get("sample_size", 128 if config.get("_class_name") == "FluxTransformer2DModel" else None)
        blocks = json.loads(vae_config.read_text(encoding="utf-8")).get("block_out_channels") or [0]
        if isinstance(sample, int):
            return sample * 2 ** (len(blocks) - 1)
    return fallback


def controlnet_choices(source: str | None, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """ControlNets offered for ``source``: "none", the registry's for its family, then ``extra`` (local folders)."""
    from ..models.controlnets import list_controlnets

    family = model_family(source)
    # the Generate tab drives UNet ControlNets only; Flux's run through `hfvision generate`
    registered = list_controlnets(family) if family and family not in ("flux", "sd3") else []
    return [NO_CONTROLNET, *registered, *extra]


@dataclass
class GenerateRequest:
    """One Generate-tab submission."""

    model: str
    prompt: str
    negative_prompt: str = ""
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    seed: int = -1  # -1: random
    width: int = 512
    height: int = 512
    num_images: int = 1
    token: str = ""
    class_noun: str = ""
    controlnet: str = NO_CONTROLNET
    control_image: Any = None  # PIL image (already the condition) or None
    controlnet_scale: float = 1.0

    def __post_init__(self):
        if not self.model:
            raise ValueError("choose a model: a registry key (e.g. sd15), a local folder or file, or a URL")
        if not self.prompt or not self.prompt.strip():
            raise ValueError("write a prompt first")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 8:
                low = value - value % 8
                raise ValueError(f"{name}={value} must be a multiple of 8; try {low} or {low + 8}")
        if not 1 <= self.num_images <= 16:
            raise ValueError(f"number of images {self.num_images} must be between 1 and 16")
        if self.controlnet not in ("", NO_CONTROLNET, None) and self.control_image is None:
            raise ValueError(f"ControlNet {self.controlnet!r} needs a control image; upload one or choose 'none'")


@dataclass
class GenerateBackend:
    """Loads (and keeps) the last used pipeline and ControlNet, and generates.

    Args:
        output_dir (`str`, *optional*): where generated PNGs are written for download (a temp folder by default).
        loader (`Callable[[str], Any]`, *optional*): model source -> diffusers pipeline
            (default ``hfvision.models.load_pipeline``).
    """

    output_dir: str | None = None
    loader: Callable[[str], Any] | None = None
    _pipe: Any = field(default=None, init=False, repr=False)
    _source: str | None = field(default=None, init=False, repr=False)
    _controlnets: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        if self.output_dir is None:
            import tempfile

            self.output_dir = tempfile.mkdtemp(prefix="hfvision-ui-")
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)

    def pipeline(self, source: str):
        """The pipeline for ``source``, loaded on first use (the previous one is released)."""
        if source != self._source:
            loader = self.loader
            if loader is None:
                from ..models import load_pipeline as loader
            self._pipe, self._source, self._controlnets = None, None, {}
            logger.info("UI: loading %s", source)
            self._pipe = loader(source)
            self._source = source
            if hasattr(self._pipe, "set_progress_bar_config"):
                self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def subject(self) -> tuple[str, str]:
        """The loaded DreamBooth pipeline's (instance token, class noun), or empty strings."""
        config = getattr(self._pipe, "config", None) or {}
        return config.get("instance_token") or "", config.get("class_noun") or ""

    def with_controlnet(self, pipe: Any, name: str):
        """``pipe`` driven by ControlNet ``name`` (registry name, local folder or Hub id), compatibility checked."""
        from ..models import load_controlnet
        from ..pipelines.dreambooth import infer_family

        if getattr(pipe, "unet", None) is None:
            raise ValueError(f"ControlNet {name!r}: the UI runs ControlNets with SD 1.x/2.x/SDXL models only")
        if name not in self._controlnets:
            self._controlnets[name] = load_controlnet(name, base=pipe)
        controlnet = self._controlnets[name]
        if infer_family(pipe.unet) == "sdxl":
            from ..pipelines.dreambooth_xl import DreamBoothXLPipeline as cls
        else:
            from ..pipelines.dreambooth import DreamBoothPipeline as cls
        composed = cls.from_components(pipe, controlnet=controlnet)
        composed.set_progress_bar_config(disable=True)
        return composed

    def generate(self, request: GenerateRequest, progress: Callable[[int, int], None] | None = None):
        """Run ``request``; returns (list of PIL images, list of PNG paths, seed used)."""
        import torch

        from ..pipelines.dreambooth import expand_prompt
        from ..utils.io import atomic_write

        with self._lock:  # one generation at a time: the pipeline object is shared
            pipe = self.pipeline(request.model)
            model_token, model_class = self.subject()
            token, noun = request.token or model_token, request.class_noun or model_class
            prompt = expand_prompt(request.prompt, token or None, noun or None)
            negative = expand_prompt(request.negative_prompt, token or None, noun or None) or None
            kwargs: dict[str, Any] = {}
            if request.controlnet not in ("", NO_CONTROLNET, None):
                pipe = self.with_controlnet(pipe, request.controlnet)
                kwargs["control_image"] = request.control_image.convert("RGB").resize((request.width, request.height))
                kwargs["controlnet_conditioning_scale"] = request.controlnet_scale
            seed = request.seed if request.seed >= 0 else secrets.randbits(31)
            if progress is not None:

                def on_step(pipeline, step, timestep, callback_kwargs):
                    progress(step + 1, request.num_inference_steps)
                    return callback_kwargs

                kwargs["callback_on_step_end"] = on_step
            images = pipe(
                prompt=prompt,
                negative_prompt=negative,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                width=request.width,
                height=request.height,
                num_images_per_prompt=request.num_images,
                generator=torch.Generator(device="cpu").manual_seed(seed),
                **kwargs,
            ).images
        paths = []
        for i, image in enumerate(images):
            path = Path(self.output_dir) / f"hfvision-{seed}-{i}.png"
            with atomic_write(path, "wb") as f:
                image.save(f, format="PNG")
            paths.append(str(path))
        return images, paths, seed


def canny_preview(image, low: int = 100, high: int = 200):
    """Canny edges of ``image`` (the condition canny ControlNets expect), or ``None`` without an image."""
    if image is None:
        return None
    from ..pipelines.controlnet_utils import canny_image

    return canny_image(image.convert("RGB"), int(low), int(high))


@dataclass
class ClassifyBackend:
    """Classifies uploads with a cached pipeline; face-first mode draws each face's box and top label."""

    model: str | None = None
    task: str = "gender-classification"
    loader: Callable[[str, str], Any] | None = None
    _pipes: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def pipeline(self, model: str | None = None):
        model = model or self.model
        if not model:
            raise ValueError("choose a classifier model (a Hub id or a local folder)")
        key = (self.task, model)
        if key not in self._pipes:
            if self.loader is not None:
                self._pipes[key] = self.loader(self.task, model)
            else:
                from ..pipelines.factory import pipeline

                self._pipes[key] = pipeline(self.task, model=model)
        return self._pipes[key]

    def classify(self, image_path: str | os.PathLike, faces: bool = False, top_k: int = 5, model: str | None = None):
        """Returns (annotated PIL image, ``{label: score}`` of the whole image or first face, raw results)."""
        from ..data.image_io import load_image

        image = load_image(image_path)
        with self._lock:  # one call at a time per backend: pipelines are not meant to be shared across threads
            pipe = self.pipeline(model)
            results = pipe(image, faces=True, top_k=top_k) if faces else pipe(image, top_k=top_k)
        if not faces:
            return draw_results(image, None), {r["label"]: r["score"] for r in results}, results
        top = {r["label"]: r["score"] for r in results[0]["labels"]} if results else {}
        return draw_results(image, results), top, results


def draw_results(image, faces: list[dict] | None):
    """A copy of ``image`` with each face's box and top label drawn (``faces`` as the face-first pipeline returns)."""
    from PIL import ImageDraw, ImageFont

    canvas = image.convert("RGB").copy()
    if not faces:
        return canvas
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(min(canvas.size) / 150))
    try:
        font = ImageFont.load_default(size=max(12, min(canvas.size) // 25))
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    for face in faces:
        box = face["box"]
        xy = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        draw.rectangle(xy, outline=(255, 64, 64), width=width)
        if face["labels"]:
            best = face["labels"][0]
            text = f"{best['label']} {best['score']:.2f}"
            left, top, right, bottom = draw.textbbox((xy[0], xy[1]), text, font=font)
            y = max(0, xy[1] - (bottom - top) - 2 * width)
            draw.rectangle(
                (xy[0], y, xy[0] + right - left + 2 * width, y + bottom - top + 2 * width), fill=(255, 64, 64)
            )
            draw.text((xy[0] + width, y + width - (top - xy[1])), text, fill=(255, 255, 255), font=font)
    return canvas
