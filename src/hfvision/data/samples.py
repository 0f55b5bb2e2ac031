"""Real photos that ship inside scikit-image and scikit-learn, for tests and the demo (no downloads).

Licences: scikit-image's ``astronaut`` is NASA public domain; the others are documented by scikit-image
(``skimage.data``) and scikit-learn (``load_sample_images``).
"""

from __future__ import annotations

from ..utils.import_utils import require

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry")
SKLEARN_PHOTOS = ("china", "flower")


def sample_image(name: str = "astronaut"):
    """Return a bundled photo as an RGB ``PIL.Image``.

    Args:
        name (`str`, *optional*, defaults to `"astronaut"`):
            One of ``astronaut`` (one adult face), ``chelsea`` (a cat), ``coffee``, ``rocket``, ``camera``,
            ``immunohistochemistry`` (scikit-image) or ``china``, ``flower`` (scikit-learn).
    """
    from PIL import Image

    if name in SKIMAGE_PHOTOS:
        require("skimage", "bundled sample photos")
        import skimage.data

        return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    if name in SKLEARN_PHOTOS:
        require("sklearn", "bundled sample photos")
        from sklearn.datasets import load_sample_images

        data = load_sample_images()
        index = [n.rsplit("/", 1)[-1].split(".")[0] for n in data.filenames].index(name)
        return Image.fromarray(data.images[index]).convert("RGB")
    raise ValueError(f"unknown sample image {name!r}; choose one of {SKIMAGE_PHOTOS + SKLEARN_PHOTOS}")
