"""Safe image loading: one function that either returns a correct RGB image or raises one clear error.

Handles EXIF orientation, palette/alpha (flattened on white), CMYK, 16-bit and grayscale images;
animated images use their first frame. Refuses empty, truncated, non-image and oversized
(decompression bomb) inputs with an :class:`ImageLoadError` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: File suffixes taken as images when a folder is scanned (lower case; explicit files and globs are taken as given).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")

#: Default pixel budget (width x height): 64 MP, well above any camera photo, far below a bomb.
MAX_PIXELS = 64_000_000

_SNIFF = {b"<svg": "SVG", b"<?xml": "XML/SVG", b"<!doc": "HTML", b"<html": "HTML", b"%PDF": "PDF"}


class ImageLoadError(ValueError):
    """An input that is not a usable image; ``reason`` is a short code (``corrupt``, ``truncated``, ...)."""

    def __init__(self, source: str, reason: str, detail: str):
        self.source, self.reason, self.detail = source, reason, detail
        super().__init__(f"{source}: {reason}: {detail}")


_EXIF_ORIENTATION = 0x0112  # EXIF tag 274: 1 = upright; 2-8 = mirrored and/or rotated


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _read_bytes(source, name: str) -> bytes:
    path = Path(source)
    try:
        if path.is_dir():
            raise ImageLoadError(name, "not a file", "it is a directory")
        data = path.read_bytes()
    except ImageLoadError:
        raise
    except FileNotFoundError as err:
        raise ImageLoadError(name, "unreadable", "file not found (or a broken/looping symlink)") from err
    except PermissionError as err:
        raise ImageLoadError(name, "unreadable", "permission denied") from err
    except OSError as err:  # symlink loops (ELOOP), I/O errors
        raise ImageLoadError(name, "unreadable", err.strerror or str(err)) from err
    return data


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha is flattened on ``background``, 16-bit scaled, CMYK converted."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def load_image(source, max_pixels: int | None = MAX_PIXELS, min_size: int = 1) -> Image.Image:
    """Load ``source`` (path, bytes, file object or PIL image) as an upright RGB ``PIL.Image``.

    An upright RGB ``PIL.Image`` passed in is returned as is (the same object, not a copy): copy it before
    drawing on it if the original must stay untouched.

    Args:
        source: a file path, raw bytes, a binary file object, or a ``PIL.Image``.
        max_pixels (`int`, *optional*, defaults to 64,000,000):
            Refuse images whose *declared* size exceeds this, before decoding (decompression bombs).
        min_size (`int`, *optional*, defaults to 1): refuse images whose shorter side is smaller.

    Raises:
        `ImageLoadError`: with ``reason`` one of ``empty``, ``not a file``, ``unreadable``, ``not an image``,
        ``corrupt``, ``truncated``, ``decompression bomb``, ``too small``.

    >>> load_image("photo.jpg").mode
    'RGB'
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = _name(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, os.PathLike)):
            data = _read_bytes(source, name)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = source.read()
        if not data:
            raise ImageLoadError(name, "empty", "zero bytes")
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as err:
            head = data[:64].lstrip().lower()
            kind = next((v for k, v in _SNIFF.items() if head.startswith(k.lower())), None)
            detail = f"looks like {kind}" if kind else "unknown format"
            raise ImageLoadError(name, "not an image", detail) from err
        except Image.DecompressionBombError as err:
            raise ImageLoadError(name, "decompression bomb", str(err)) from err
        except OSError as err:  # PIL reports a JPEG cut short while parsing headers as "Truncated File Read"
            reason = "truncated" if "truncated" in str(err).lower() else "corrupt"
            raise ImageLoadError(name, reason, str(err)) from err
    w, h = image.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            name, "decompression bomb", f"declared {w}x{h} = {w * h} px exceeds max_pixels={max_pixels}"
        )
    if min(w, h) < min_size:
        raise ImageLoadError(name, "too small", f"{w}x{h} is below min_size={min_size}")
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
        if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # exif_transpose copies even upright images
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(name, "decompression bomb", str(err)) from err
    except OSError as err:
        reason = "truncated" if "truncated" in str(err).lower() else "corrupt"
        raise ImageLoadError(name, reason, str(err)) from err
    except (ValueError, SyntaxError) as err:
        raise ImageLoadError(name, "corrupt", str(err)) from err


# JPEG start-of-frame markers of the Huffman-coded processes libjpeg(-turbo) decodes everywhere: baseline,
# extended sequential and progressive (SOF0-SOF2). Others (lossless, arithmetic, hierarchical) go through PIL.
_JPEG_SOF = {0xC0, 0xC1, 0xC2}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn: markers without a length field


def jpeg_frame(data: bytes) -> tuple[int, int, int, int] | None:
    """``(height, width, components, bits)`` from a JPEG's frame header, or ``None`` if ``data`` does not start
    like a JPEG with a SOF0-SOF2 frame before its scan data. Reads the headers only (microseconds)."""
    return _jpeg_headers(data)[0]


def _jpeg_headers(data: bytes) -> tuple[tuple[int, int, int, int] | None, bool]:
    """Walk the marker segments up to the scan: ``(frame or None, whether an APP1 has a doubled EXIF header)``."""
    if data[:3] != b"\xff\xd8\xff":
        return None, False
    frame, doubled_exif = None, False
    i, end = 2, len(data) - 1
    while i < end:
        if data[i] != 0xFF:
            return None, doubled_exif
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in (0xDA, 0xD9) or i + 10 > len(data):  # start of scan / end of image / cut short
            break
        if marker in _JPEG_SOF and frame is None:
            bits, height, width, components = data[i + 4], *_u16(data, i + 5), data[i + 9]
            frame = (height, width, components, bits)
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # other SOFn: not handled here
            return None, doubled_exif
        elif marker == 0xE1 and data.startswith(b"Exif\x00\x00Exif\x00\x00", i + 4):
            doubled_exif = True  # Pillow skips the repeated header and reads the orientation; OpenCV does not
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
    return frame, doubled_exif


def _u16(data: bytes, i: int) -> tuple[int, int]:
    return (data[i] << 8) | data[i + 1], (data[i + 2] << 8) | data[i + 3]


def decode_jpeg(data: bytes, max_pixels: int | None = MAX_PIXELS, min_size: int = 1):
    """A JPEG photo -> upright RGB ``(H, W, 3)`` uint8 array, decoded by OpenCV without holding the GIL.

    The pixels equal ``np.asarray(load_image(data))`` (same libjpeg-turbo decode, EXIF orientation applied), so
    servers can decode on many threads at once. Returns ``None`` for anything this fast path does not take:
    other formats, CMYK or 12-bit JPEGs, lossless/arithmetic coding, truncated or corrupt data, sizes outside
    ``max_pixels``/``min_size``, a doubled EXIF header; :func:`load_image` then decodes it or raises its one clear
    error. One difference remains: libjpeg's recoverable warnings are not errors for OpenCV, so a few damaged
    files that ``load_image`` refuses as "broken data stream" (about 1% of random byte flips in the scan data)
    decode here, with the damaged blocks as libjpeg recovers them (as a browser would show them).
    """
    frame, doubled_exif = _jpeg_headers(data)
    if frame is None or doubled_exif:
        return None
    height, width, components, bits = frame
    if bits != 8 or components not in (1, 3) or min(height, width) < max(min_size, 1):
        return None
    if max_pixels is not None and height * width > max_pixels:
        return None
    import cv2
    import numpy as np

    flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flag is None else flag)
    if pixels is None:  # corrupt/truncated: OpenCV logs a warning and returns nothing
        return None
    return pixels if flag is not None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
