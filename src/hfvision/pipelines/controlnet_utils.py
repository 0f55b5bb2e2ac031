"""ControlNet helpers for the DreamBooth pipelines: a compatibility check and Canny edge preprocessing.

Self-contained on purpose (only numpy, PIL and, for Canny, OpenCV): `DreamBoothPipeline.save_pretrained` ships this
file next to the weights so the pipeline loads as remote code in a process that does not have hfvision.

>>> from hfvision.pipelines.controlnet_utils import canny_image
>>> from hfvision.testing import sample_image
>>> edges = canny_image(sample_image("astronaut").resize((64, 64)))
>>> edges.mode, edges.size
('RGB', (64, 64))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image

# Config keys a ControlNet must share with the UNet it drives: its residuals are added to the UNet's down/mid
# blocks (same channels), it reads the same text embeddings (cross-attention dim) and, for SDXL, the same
# size/crop conditioning.
_SHARED_KEYS = (
    "in_channels",
    "block_out_channels",
    "cross_attention_dim",
    "addition_embed_type",
    "projection_class_embeddings_input_dim",
)


# hfvision.models.controlnets imports this function (one rule for the registry and the shipped pipelines).
def controlnet_mismatch(controlnet_config: Mapping[str, Any], unet_config: Mapping[str, Any]) -> str | None:
    """Why a ControlNet with ``controlnet_config`` cannot drive a UNet with ``unet_config``, or ``None`` if it can."""
    cls_name = controlnet_config.get("_class_name") or "ControlNetModel"
    if cls_name not in ("ControlNetModel", "ControlNetUnionModel"):
        return f"it is a {cls_name}, which does not condition a UNet2DConditionModel"

    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value

    for key in _SHARED_KEYS:
        theirs, ours = norm(controlnet_config.get(key)), norm(unet_config.get(key))
        if theirs != ours:
            return f"its {key} is {theirs!r} but the UNet's is {ours!r}"
    return None


def check_controlnet_compatible(controlnet: Any, unet: Any) -> None:
    """Raise ``ValueError`` when ``controlnet`` (a model or config) cannot be used with ``unet`` (model or config)."""
    cn_config = getattr(controlnet, "config", controlnet)
    unet_config = getattr(unet, "config", unet)
    reason = controlnet_mismatch(cn_config, unet_config)
    if reason is not None:
        name = cn_config.get("_name_or_path")
        raise ValueError(
            f"ControlNet{f' {name!r}' if name else ''} does not match this pipeline's base model: {reason}. "
            "Use a ControlNet trained for the same base family (see hfvision.models.list_controlnets(base))."
        )


def canny_image(image: PIL.Image.Image | np.ndarray, low_threshold: int = 100, high_threshold: int = 200):
    """Canny edge map of ``image`` as a 3-channel ``PIL.Image`` (white edges on black), the input canny ControlNets
    were trained on.

    Args:
        image (`PIL.Image.Image` or `np.ndarray`): RGB image (a uint8 ``HxWx3`` or ``HxW`` array also works).
        low_threshold (`int`, *optional*, defaults to 100): lower hysteresis threshold of ``cv2.Canny``.
        high_threshold (`int`, *optional*, defaults to 200): upper hysteresis threshold of ``cv2.Canny``.
    """
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Canny preprocessing needs OpenCV; run: pip install 'opencv-python-headless<5'") from err
    if not 0 <= low_threshold <= high_threshold:
        raise ValueError(f"need 0 <= low_threshold <= high_threshold, got {low_threshold} and {high_threshold}")
    array = np.asarray(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image)
    if array.dtype != np.uint8:
        raise ValueError(
            f"canny_image expects uint8 pixels, got {array.dtype}; convert with (x * 255).astype('uint8')"
        )
    gray = array if array.ndim == 2 else cv2.cvtColor(array[..., :3], cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low_threshold, high_threshold)
    return PIL.Image.fromarray(np.stack([edges] * 3, axis=-1))
