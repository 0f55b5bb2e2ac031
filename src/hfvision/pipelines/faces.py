"""Face-first classification helpers: detect faces, crop each with a margin, shape the per-face results.

Detectors come from :mod:`hfvision.data.faces` (OpenCV Haar frontal + profile by default). Anything callable
``(PIL.Image) -> list[FaceBox]`` works, and a transformers ``object-detection`` pipeline is wrapped in
:class:`~hfvision.data.faces.PipelineFaceDetector` automatically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..data.faces import FaceBox, PipelineFaceDetector, get_face_detector

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


def resolve_detector(detector: Any = None):
    """``None``/``"haar"`` -> the shared Haar detector; an object-detection pipeline -> adapted; a callable as is."""
    if getattr(detector, "task", None) == "object-detection":
        return PipelineFaceDetector(detector)
    return get_face_detector(detector)


def face_crops(image: Image.Image, detector: Any = None, margin: float = 0.25) -> list[tuple[FaceBox, Image.Image]]:
    """Faces in ``image`` (left to right, top to bottom) with their crops grown by ``margin`` x the face size.

    Args:
        image (`PIL.Image.Image`): an RGB image.
        detector (*optional*): see :func:`resolve_detector`.
        margin (`float`, *optional*, defaults to 0.25): extra context on each side, as a fraction of the box size.

    >>> [box for box, _ in face_crops(sample_image("astronaut"))]
    [FaceBox(xmin=..., ymin=..., xmax=..., ymax=..., score=...)]
    """
    if margin < 0:
        raise ValueError(f"face_margin={margin} must be >= 0 (a fraction of the face size added on each side)")
    width, height = image.size
    found = []
    for box in resolve_detector(detector)(image):
        if not isinstance(box, FaceBox):
            raise TypeError(f"face detector returned {type(box).__name__}, expected hfvision.data.FaceBox")
        box = FaceBox(max(0, box.xmin), max(0, box.ymin), min(width, box.xmax), min(height, box.ymax), box.score)
        if box.width > 0 and box.height > 0:
            found.append(box)
    found.sort(key=lambda b: (b.xmin, b.ymin))
    crops = []
    for box in found:
        grown = box.expand(margin, width, height)
        crops.append((box, image.crop((grown.xmin, grown.ymin, grown.xmax, grown.ymax))))
    return crops


def face_result(box: FaceBox, labels: list[dict]) -> dict:
    """One face of the face-first output: ``{"box", "score_face", "labels"}``."""
    return {"box": box.as_box(), "score_face": float(box.score), "labels": labels}
