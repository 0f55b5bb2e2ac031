"""Image loading and safety, face detection, instance-data preparation, captions and DreamBooth sessions."""

from .faces import FaceBox, FaceDetector, HaarFaceDetector, PipelineFaceDetector, get_face_detector
from .image_io import MAX_PIXELS, ImageLoadError, decode_jpeg, load_image, to_rgb

__all__ = [
    "MAX_PIXELS",
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "ImageLoadError",
    "PipelineFaceDetector",
    "decode_jpeg",
    "get_face_detector",
    "load_image",
    "to_rgb",
]

# Instance-data preparation, captions and sessions (issue 4).
from .captions import read_caption  # noqa: E402
from .prepare import PrepareOptions, prepare_instance_images  # noqa: E402
from .report import PrepareEntry, PrepareReport  # noqa: E402
from .sessions import Session  # noqa: E402
from .smart_crop import CropDecision, smart_crop  # noqa: E402

__all__ += [
    "CropDecision",
    "PrepareEntry",
    "PrepareOptions",
    "PrepareReport",
    "Session",
    "prepare_instance_images",
    "read_caption",
    "smart_crop",
]
