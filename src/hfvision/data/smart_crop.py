"""Square crops that keep the subject: faces first, else the most detailed region, else the centre.

The crop is always the largest square that fits the image (side = the shorter side), so only its position is
chosen, along the longer axis:

1. **faces** (a detector returns :class:`~hfvision.data.FaceBox` es): the square is centred on the union of the faces
   grown by ``margin`` (hair, chin); if that does not fit, on the bare union; if the faces are too far apart for one
   square, on the largest face. Inside those limits the square is clamped to the image, so a face that fits in the
   square is never cut off.
2. **saliency** (no face): the square position whose edge energy (gradient magnitude of a slightly blurred,
   downscaled grey image) is highest, when it beats the centred square by ``saliency_gain``; among near-ties the one
   closest to the centre.
3. **centre** otherwise (square images, flat images).

Boxes are ``(left, top, right, bottom)`` in pixels of the upright (EXIF-transposed) image, right/bottom exclusive,
like ``PIL.Image.crop``.

>>> from hfvision.data.smart_crop import smart_crop
>>> decision = smart_crop(image, detector="haar")
>>> square = crop_and_resize(image, decision.box, 512)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..utils.logging import get_logger
from .faces import FaceBox, FaceDetector, get_face_detector

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = get_logger(__name__)

Box = tuple[int, int, int, int]

#: How much detection work an image gets: it is downscaled so its longer side is at most this before detection.
DETECT_MAX_SIDE = 384


@dataclass(frozen=True)
class CropDecision:
    """Where to crop and why.

    Attributes:
        box (`tuple[int, int, int, int]`): ``(left, top, right, bottom)`` in image pixels.
        method (`str`): ``"faces"``, ``"saliency"``, ``"center"`` or ``"none"`` (whole image kept).
        faces (`list[FaceBox]`): every face found (image coordinates), also those the crop could not keep.
        note (`str`): a short explanation when the crop had to compromise (e.g. faces too far apart).
    """

    box: Box
    method: str
    faces: list[FaceBox] = field(default_factory=list)
    note: str = ""


def center_box(width: int, height: int) -> Box:
    """The centred square of side ``min(width, height)``."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def _place(lo_needed: int, hi_needed: int, side: int, extent: int, centre: float) -> int | None:
    """Start of a window of length ``side`` inside ``[0, extent)`` covering ``[lo_needed, hi_needed)``, nearest
    to being centred on ``centre``; ``None`` when no such window exists."""
    lo, hi = max(0, hi_needed - side), min(extent - side, lo_needed)
    if lo > hi:
        return None
    return min(max(round(centre - side / 2), lo), hi)


def square_containing(width: int, height: int, box: FaceBox | Box) -> Box | None:
    """The square of side ``min(width, height)`` inside the image that contains ``box`` and is as centred on it as
    the image allows, or ``None`` if the box is larger than the square."""
    x0, y0, x1, y1 = (box.xmin, box.ymin, box.xmax, box.ymax) if isinstance(box, FaceBox) else box
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    side = min(width, height)
    left = _place(x0, x1, side, width, (x0 + x1) / 2)
    top = _place(y0, y1, side, height, (y0 + y1) / 2)
    if left is None or top is None:
        return None
    return (left, top, left + side, top + side)


def _union(boxes: list[FaceBox]) -> FaceBox:
    return FaceBox(
        min(b.xmin for b in boxes), min(b.ymin for b in boxes), max(b.xmax for b in boxes), max(b.ymax for b in boxes)
    )


def face_crop(width: int, height: int, faces: list[FaceBox], margin: float = 0.35) -> CropDecision:
    """Square crop keeping ``faces`` (see the module docstring for the order of fallbacks)."""
    if not faces:
        raise ValueError("face_crop needs at least one face box")
    largest = max(faces, key=lambda b: (b.width * b.height, b.score))
    candidates = [
        (_union(faces).expand(margin, width, height), ""),
        (_union(faces), "the margin around the faces did not fit; kept the faces themselves"),
    ]
    if len(faces) > 1:
        note = f"{len(faces)} faces do not fit in one square; kept the largest"
        candidates += [(largest.expand(margin, width, height), note), (largest, note)]
    for box, note in candidates:
        square = square_containing(width, height, box)
        if square is not None:
            return CropDecision(square, "faces", list(faces), note)
    # a face larger than the square itself (close-up): centre on it
    side, cx, cy = min(width, height), (largest.xmin + largest.xmax) / 2, (largest.ymin + largest.ymax) / 2
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    return CropDecision((left, top, left + side, top + side), "faces", list(faces), "face larger than the crop")


def saliency_crop(image: Image.Image, saliency_gain: float = 1.1, analysis_side: int = 256) -> Box | None:
    """The square position with the most edge energy, or ``None`` when it is not clearly better than the centre.

    Args:
        image (`PIL.Image`): RGB or grey image.
        saliency_gain (`float`, *optional*, defaults to 1.1):
            The best window must hold this many times the centred window's energy to be chosen.
        analysis_side (`int`, *optional*, defaults to 256): longer side of the downscaled copy that is analysed.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    width, height = image.size
    if width == height:
        return None
    scale = min(1.0, analysis_side / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = image.convert("L").resize(small_size, Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(1))
    arr = np.asarray(grey, dtype=np.float32)
    energy = np.zeros_like(arr)
    energy[:, 1:] += np.abs(np.diff(arr, axis=1))
    energy[1:, :] += np.abs(np.diff(arr, axis=0))
    horizontal = width > height
    profile = energy.sum(axis=0 if horizontal else 1)  # energy along the axis the square can slide on
    n = profile.shape[0]
    window = max(1, min(n, round(min(width, height) * scale)))
    sums = np.convolve(profile, np.ones(window, dtype=np.float32), mode="valid")  # sums[i] = profile[i:i+window]
    if sums.size < 2 or float(sums.max()) <= 0.0:
        return None
    centre_start = (n - window) // 2
    best = float(sums.max())
    if best < saliency_gain * float(sums[centre_start]):
        return None
    near = np.flatnonzero(sums >= 0.98 * best)
    start = int(near[np.argmin(np.abs(near - centre_start))])
    side = min(width, height)
    extent = width if horizontal else height
    offset = min(max(round(start / scale), 0), extent - side)
    return (offset, 0, offset + side, side) if horizontal else (0, offset, side, offset + side)


def detect_faces(
    image: Image.Image, detector: FaceDetector | str | None = None, max_side: int | None = DETECT_MAX_SIDE
) -> list[FaceBox]:
    """Run ``detector`` on a copy downscaled to ``max_side`` and return boxes in ``image`` coordinates."""
    from PIL import Image

    detector = get_face_detector(detector)
    width, height = image.size
    scale = 1.0
    small = image
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        small = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    boxes = []
    for b in detector(small):
        x0, y0 = max(0, int(b.xmin / scale)), max(0, int(b.ymin / scale))
        x1, y1 = min(width, math.ceil(b.xmax / scale)), min(height, math.ceil(b.ymax / scale))
        if x1 > x0 and y1 > y0:
            boxes.append(FaceBox(x0, y0, x1, y1, b.score))
    return boxes


def smart_crop(
    image: Image.Image,
    detector: FaceDetector | str | None = None,
    margin: float = 0.35,
    detect_max_side: int | None = DETECT_MAX_SIDE,
    saliency_gain: float = 1.1,
    faces: list[FaceBox] | None = None,
) -> CropDecision:
    """Choose the square crop of ``image``: faces, else saliency, else centre.

    Args:
        image (`PIL.Image`): the upright image.
        detector (`FaceDetector`, `str` or `None`, *optional*):
            Face detector (``None``/``"haar"``: OpenCV Haar cascades; or any ``(PIL.Image) -> list[FaceBox]``).
        margin (`float`, *optional*, defaults to 0.35): room kept around the faces, as a fraction of their size.
        detect_max_side (`int`, *optional*, defaults to 384): detection runs on a copy at most this large.
        saliency_gain (`float`, *optional*, defaults to 1.1): see [`saliency_crop`].
        faces (`list[FaceBox]`, *optional*): already detected faces; skips detection.

    >>> smart_crop(sample_image("astronaut")).method
    'faces'
    """
    width, height = image.size
    if faces is None:
        faces = detect_faces(image, detector, detect_max_side)
    if faces:
        return face_crop(width, height, faces, margin)
    box = saliency_crop(image, saliency_gain)
    if box is not None:
        return CropDecision(box, "saliency")
    return CropDecision(center_box(width, height), "center")


def crop_and_resize(image: Image.Image, box: Box, size: int) -> Image.Image:
    """Crop ``box`` and resize it to ``size`` x ``size`` with Lanczos (one resampling step)."""
    from PIL import Image

    return image.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def resize_keep_aspect(image: Image.Image, size: int, multiple: int = 8) -> Image.Image:
    """Resize to about ``size * size`` pixels keeping the aspect ratio, both sides rounded to ``multiple``.

    The rounding changes the aspect ratio by less than ``multiple / side`` (under 2 % at 512 px); used with
    ``crop="none"`` for aspect-ratio bucketing.
    """
    from PIL import Image

    width, height = image.size
    k = size / (width * height) ** 0.5
    new = (
        max(multiple, round(width * k / multiple) * multiple),
        max(multiple, round(height * k / multiple) * multiple),
    )
    return image.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
