"""Face detection behind a small interface: OpenCV Haar cascades by default, any detector pluggable.

A detector is any callable ``(PIL.Image) -> list[FaceBox]``. :class:`HaarFaceDetector` uses the
frontal and profile cascades bundled with opencv-python-headless (< 5); :class:`PipelineFaceDetector`
adapts a transformers ``object-detection`` pipeline (e.g. a DETR/YOLOS face model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixel coordinates (``xmax``/``ymax`` exclusive) with a confidence in [0, 1]."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int
    score: float = 1.0

    @property
    def width(self) -> int:
        return self.xmax - self.xmin

    @property
    def height(self) -> int:
        return self.ymax - self.ymin

    def as_box(self) -> dict[str, int]:
        """``{"xmin", "ymin", "xmax", "ymax"}`` like transformers' object-detection output."""
        return {k: v for k, v in asdict(self).items() if k != "score"}

    def expand(self, margin: float, width: int, height: int) -> FaceBox:
        """Grow the box by ``margin`` x its size on each side, clipped to the image."""
        dx, dy = round(self.width * margin), round(self.height * margin)
        return FaceBox(
            max(0, self.xmin - dx),
            max(0, self.ymin - dy),
            min(width, self.xmax + dx),
            min(height, self.ymax + dy),
            self.score,
        )


@runtime_checkable
class FaceDetector(Protocol):
    def __call__(self, image: Image.Image) -> list[FaceBox]: ...


def non_max_suppression(boxes: list[FaceBox], iou_threshold: float = 0.3) -> list[FaceBox]:
    """Keep the highest-scoring box of every group overlapping more than ``iou_threshold`` (``torchvision.ops.nms``)."""
    if len(boxes) < 2:
        return list(boxes)
    import torch
    from torchvision.ops import nms

    coords = torch.tensor([[b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes], dtype=torch.float64)
    scores = torch.tensor([b.score for b in boxes], dtype=torch.float64)
    return [boxes[i] for i in nms(coords, scores, iou_threshold).tolist()]


class HaarFaceDetector:
    """OpenCV Haar cascades: frontal faces, plus left and right profiles (the image is mirrored for the other side).

    Args:
        scale_factor (`float`, *optional*, defaults to 1.1): cascade pyramid step.
        min_neighbors (`int`, *optional*, defaults to 5): detections needed to keep a face (higher = stricter).
        min_size_fraction (`float`, *optional*, defaults to 0.05): smallest face side, as a fraction of the shorter image side.
        profiles (`bool`, *optional*, defaults to `True`): also run the profile cascade.
    """

    CASCADES = ("haarcascade_frontalface_default.xml",)
    PROFILE = "haarcascade_profileface.xml"

    def __init__(
        self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size_fraction: float = 0.05, profiles: bool = True
    ):
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise ImportError("this OpenCV has no Haar cascades (removed in 5.0); install 'opencv-python-headless<5'")
        self._cv2 = cv2
        names = self.CASCADES + ((self.PROFILE,) if profiles else ())
        self._cascades = {n: cv2.CascadeClassifier(cv2.data.haarcascades + n) for n in names}
        self.scale_factor, self.min_neighbors, self.min_size_fraction = scale_factor, min_neighbors, min_size_fraction

    def _detect(self, name: str, gray, mirrored: bool) -> list[FaceBox]:
        cv2 = self._cv2
        h, w = gray.shape
        side = max(20, int(min(h, w) * self.min_size_fraction))
        img = cv2.flip(gray, 1) if mirrored else gray
        boxes, _, weights = self._cascades[name].detectMultiScale3(
            img,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        out = []
        for (x, y, bw, bh), weight in zip(boxes, list(weights)):
            if mirrored:
                x = w - x - bw
            score = 1.0 / (1.0 + math.exp(-float(weight) / 4.0))  # cascade stage weight squashed to (0, 1)
            out.append(FaceBox(int(x), int(y), int(x + bw), int(y + bh), round(score, 4)))
        return out

    def __call__(self, image: Image.Image) -> list[FaceBox]:
        import numpy as np

        cv2 = self._cv2
        gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY))
        found: list[FaceBox] = []
        for name in self._cascades:
            found += self._detect(name, gray, mirrored=False)
            if name == self.PROFILE:
                found += self._detect(name, gray, mirrored=True)
        return non_max_suppression(found)


class PipelineFaceDetector:
    """Adapt a transformers ``object-detection`` pipeline: keeps boxes whose label is in ``labels`` above ``threshold``."""

    def __init__(self, detector: Callable, labels: tuple[str, ...] = ("face",), threshold: float = 0.5):
        self.detector, self.labels, self.threshold = detector, {lbl.lower() for lbl in labels}, threshold

    def __call__(self, image: Image.Image) -> list[FaceBox]:
        boxes = []
        for det in self.detector(image, threshold=self.threshold):
            if det["label"].lower() in self.labels:
                b = det["box"]
                boxes.append(
                    FaceBox(int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"]), float(det["score"]))
                )
        return non_max_suppression(boxes)


_DEFAULT: HaarFaceDetector | None = None


def get_face_detector(detector: FaceDetector | str | None = None) -> FaceDetector:
    """Resolve ``detector``: ``None``/``"haar"`` -> a shared :class:`HaarFaceDetector`; a callable is returned as is."""
    global _DEFAULT
    if detector is None or detector == "haar":
        if _DEFAULT is None:
            _DEFAULT = HaarFaceDetector()
        return _DEFAULT
    if callable(detector):
        return detector
    raise ValueError(f"face detector {detector!r} is not 'haar' or a callable (PIL.Image) -> list[FaceBox]")
