"""Image loading and safety, face detection, instance-data preparation."""

from .faces import FaceBox, FaceDetector, HaarFaceDetector, PipelineFaceDetector, get_face_detector
from .image_io import MAX_PIXELS, ImageLoadError, load_image, to_rgb

__all__ = [
    "MAX_PIXELS",
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "ImageLoadError",
    "PipelineFaceDetector",
    "get_face_detector",
    "load_image",
    "to_rgb",
]
