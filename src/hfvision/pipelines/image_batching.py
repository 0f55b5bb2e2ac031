"""Batched image preprocessing derived from a model's own image processor.

A model's image processor is split in two: the geometric part (resize, center crop) runs per image on ``uint8``
data, and the arithmetic part (rescale + normalize) runs once per batch in ``float32`` on the model's device. The
ops, their parameters and their order are the processor's own, so the pixel values equal the processor's output:

- transformers ``TorchvisionBackend`` processors (e.g. ``ViTImageProcessor``): their own ``process_image``,
  ``resize``, ``center_crop`` and ``rescale_and_normalize`` methods are called (bit-identical output);
- timm processors (``TimmWrapperImageProcessor``): the PIL transforms of timm's eval transform before its
  ``ToTensor``, then ``/255``, ``-mean``, ``/std`` as ``ToTensor`` + ``Normalize`` compute them (bit-identical);
- anything else (custom ``_preprocess`` logic, PIL-backend processors): the processor itself, per image.

This module is copied next to the custom pipeline code by ``Pipeline.save_pretrained``: it imports only
torch/numpy/PIL/transformers (plus torchvision lazily) so the saved pipeline loads where hfvision is not installed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.utils import logging

logger = logging.get_logger(__name__)

_TO_TENSOR = {"ToTensor", "MaybeToTensor"}
_GEOMETRY = {"Resize", "CenterCrop", "ResizeKeepRatio", "CenterCropOrPad"}


def _torchvision_backend_class():
    try:
        from transformers.image_processing_backends import TorchvisionBackend
        from transformers.image_processing_utils import BaseImageProcessor
    except ImportError:  # older transformers: no backend split, use the processor as is
        return None, None
    return TorchvisionBackend, BaseImageProcessor


class BatchedImagePreprocessor:
    """Per-image ``uint8`` geometry plus per-batch normalization, equal to ``processor(images)["pixel_values"]``.

    Args:
        image_processor: the model's image processor (``pipeline.image_processor``).

    >>> prep = BatchedImagePreprocessor(pipe.image_processor)
    >>> batch = torch.cat([prep.prepare(image) for image in images])  # uint8, (N, 3, H, W)
    >>> pixel_values = prep.normalize(batch)  # float32, equal to pipe.image_processor(images)["pixel_values"]
    """

    def __init__(self, image_processor: Any):
        self.image_processor = image_processor
        self.mode = "processor"
        self._geometry: list = []
        self._mean = self._std = None
        transforms = getattr(image_processor, "val_transforms", None)
        backend, base = _torchvision_backend_class()
        if transforms is not None and hasattr(transforms, "transforms"):
            self._init_timm(list(transforms.transforms))
        elif backend is not None and isinstance(image_processor, backend):
            cls = type(image_processor)
            plain = (
                cls._preprocess is backend._preprocess
                and cls._preprocess_image_like_inputs is base._preprocess_image_like_inputs
                and not getattr(image_processor, "do_pad", False)
            )
            if plain:
                self.mode = "torchvision"
        if self.mode == "processor":
            logger.info("%s: per-image preprocessing (no batched plan)", type(image_processor).__name__)

    def _init_timm(self, transforms: list) -> None:
        names = [type(t).__name__ for t in transforms]
        split = next((i for i, n in enumerate(names) if n in _TO_TENSOR), None)
        if split is None or names[split + 1 :] != ["Normalize"] or not set(names[:split]) <= _GEOMETRY:
            return
        norm = transforms[split + 1]
        self._geometry = transforms[:split]
        self._mean = torch.as_tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.as_tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.mode = "timm"

    @property
    def batched(self) -> bool:
        """Whether normalization is deferred to :meth:`normalize` (False: :meth:`prepare` returns final values)."""
        return self.mode != "processor"

    def prepare(self, image) -> torch.Tensor:
        """One image (RGB ``PIL.Image``, HWC/CHW array or tensor) -> ``(1, C, H, W)`` pixels before normalization.

        The result may be a channels-last view of the image's memory: the batch is made contiguous by the
        float conversion in :meth:`normalize`, one pass for the whole batch instead of one copy per image.
        """
        proc = self.image_processor
        if self.mode == "torchvision":
            if isinstance(image, Image.Image) and image.mode == "RGB":
                x = _hwc_tensor(image).permute(2, 0, 1)  # what process_image computes, without its per-image copy
            elif is_channels_last_rgb(image):  # e.g. hfvision.data.decode_jpeg's output: the same, without PIL
                x = torch.from_numpy(image).permute(2, 0, 1)
            else:
                x = proc.process_image(image, do_convert_rgb=getattr(proc, "do_convert_rgb", None))
            if proc.do_resize:
                x = proc.resize(image=x, size=proc.size, resample=proc.resample)
            if getattr(proc, "do_center_crop", False):
                x = proc.center_crop(x, proc.crop_size)
            return x.unsqueeze(0)
        if self.mode == "timm":
            if not isinstance(image, Image.Image):
                image = _to_pil(image)
            for transform in self._geometry:
                image = transform(image)
            return _hwc_tensor(image.convert("RGB") if image.mode != "RGB" else image).permute(2, 0, 1).unsqueeze(0)
        return proc(images=image, return_tensors="pt")["pixel_values"]

    def normalize(self, pixel_values: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A batch from :meth:`prepare` -> the model's ``pixel_values`` (on the batch's device, in ``dtype``)."""
        if self.mode == "processor":
            return pixel_values if dtype is None else pixel_values.to(dtype)
        proc, device = self.image_processor, pixel_values.device
        # one pass: uint8 -> float32 and channels-last views -> contiguous NCHW (a fresh tensor, safe to modify)
        x = pixel_values.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        if self.mode == "timm":
            x = x.div_(255).sub_(self._mean.to(device)).div_(self._std.to(device))  # ToTensor, then Normalize
        elif proc.do_normalize:
            mean, std = proc.image_mean, proc.image_std
            if proc.do_rescale:  # fused exactly like TorchvisionBackend.rescale_and_normalize
                mean = torch.tensor(mean, device=device) * (1.0 / proc.rescale_factor)
                std = torch.tensor(std, device=device) * (1.0 / proc.rescale_factor)
            x = _tvF().normalize(x, mean, std, inplace=True)
        elif proc.do_rescale:
            x = x.mul_(proc.rescale_factor)
        return x if dtype is None else x.to(dtype)

    def output_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of every prepared image when it is fixed (for trial batches), else ``None``."""
        proc = self.image_processor
        if self.mode == "timm":
            size = getattr(proc, "data_config", {}).get("input_size")
            return tuple(size[-2:]) if size else None
        for attr, flag in (("crop_size", "do_center_crop"), ("size", "do_resize")):
            size = getattr(proc, attr, None)
            if getattr(proc, flag, False) and size is not None and getattr(size, "height", None):
                return size.height, size.width
        return None


def _tvF():
    from torchvision.transforms.v2 import functional

    return functional


def _hwc_tensor(image: Image.Image) -> torch.Tensor:
    """``(H, W, C)`` uint8 tensor over a read-only copy of the image's bytes (never written to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable": it is only read
        return torch.from_numpy(np.asarray(image))


def is_channels_last_rgb(image) -> bool:
    """An ``(H, W, 3)`` uint8 array that transformers reads as channels-last (its first axis is not 1 or 3)."""
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] not in (1, 3)
    )


def _to_pil(image) -> Image.Image:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # CHW -> HWC
    if array.dtype != np.uint8:
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")


def _optional_module(name: str):
    """An hfvision module when hfvision is installed, else ``None`` (the saved pipeline code runs without it)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def load_input_image(image, timeout: float | None = None):
    """A pipeline input as an upright RGB ``PIL.Image`` (arrays and tensors are passed through).

    Paths, bytes and PIL images go through ``hfvision.data.load_image`` when hfvision is installed (EXIF
    transpose, alpha flattened on white, 16-bit/CMYK/palette conversion, and one clear ``ImageLoadError``
    naming the file and the reason for empty, corrupt, truncated, non-image or oversized inputs); URLs, and
    everything when hfvision is absent, go through transformers' ``load_image``.
    """
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return image
    image_io = None
    if not (isinstance(image, str) and image.startswith(("http://", "https://"))):
        image_io = _optional_module("hfvision.data.image_io")
    if image_io is not None:
        return image_io.load_image(image)
    from transformers.image_utils import load_image

    return load_image(image, timeout=timeout)
