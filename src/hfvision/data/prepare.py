"""Prepare DreamBooth instance photos: safe loading, smart square crop, resize, captions, idempotent re-runs.

:func:`prepare_instance_images` reads every file directly inside ``src`` (sub-folders are not read) and writes
``dst/<name>-<hash12>.png`` (or ``.jpg``) plus ``dst/<name>-<hash12>.txt`` when the image has a sidecar or file-name
caption (see :mod:`hfvision.data.captions`). Source files are only ever *read*. Outputs carry no metadata (EXIF,
GPS) and are written atomically.

Re-running is idempotent: ``dst/.hfvision-prepared.json`` maps the sha256 of each source's bytes to its output and the
settings used, so unchanged inputs are ``skipped`` (captions are still refreshed), identical files are reported as
``duplicate``, changed settings re-prepare everything under the same names, and a renamed file keeps its output.
Files that are not usable are ``rejected`` with a one-line reason; nothing raises for a bad input file.

Format details: EXIF orientation is applied; palette/alpha/CMYK/16-bit/grey images become 8-bit RGB (alpha flattened
on white); **animated GIF/WebP/APNG use their first frame**; declared sizes above ``max_pixels`` are refused before
decoding (decompression bombs); images smaller than ``size`` are upscaled (``upscaled=True`` in the report) unless
``allow_upscale=False``.

>>> report = prepare_instance_images("my_photos", "instance_images", size=512, crop="smart")
>>> print(report.to_table())
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils.io import atomic_write
from ..utils.logging import get_logger
from .captions import CAPTION_SUFFIX, resolve_caption
from .faces import FaceDetector, get_face_detector
from .image_io import IMAGE_EXTENSIONS, MAX_PIXELS, ImageLoadError, load_image
from .report import PrepareEntry, PrepareReport
from .smart_crop import CropDecision, center_box, crop_and_resize, resize_keep_aspect, smart_crop

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = get_logger(__name__)

CROP_MODES = ("smart", "center", "none")
OUTPUT_FORMATS = ("png", "jpeg")
MANIFEST_NAME = ".hfvision-prepared.json"
REPORT_NAME = "prepare_report.json"
#: Bumped when the crop/resize algorithm changes, so old outputs are re-prepared.
ALGORITHM_VERSION = 1


@dataclass
class PrepareOptions:
    """Settings of :func:`prepare_instance_images` (also the source of the ``hfvision data prepare`` flags)."""

    size: int = field(default=512, metadata={"help": "side of the square output in pixels (multiple of 8)"})
    crop: str = field(
        default="smart",
        metadata={"help": "smart: faces > saliency > centre; center; none: keep aspect ratio", "choices": CROP_MODES},
    )
    output_format: str = field(default="png", metadata={"help": "output format", "choices": OUTPUT_FORMATS})
    jpeg_quality: int = field(default=95, metadata={"help": "JPEG quality (95-100) when output_format=jpeg"})
    instance_prompt: str | None = field(default=None, metadata={"help": "caption for images without a sidecar"})
    caption_from_filename: bool = field(
        default=False, metadata={"help": "caption from the file name ('sks dog (3).jpg' -> 'sks dog')"}
    )
    min_size: int = field(default=64, metadata={"help": "reject images whose shorter side is below this"})
    allow_upscale: bool = field(default=True, metadata={"help": "upscale images smaller than size (reported)"})
    max_pixels: int = field(default=MAX_PIXELS, metadata={"help": "refuse larger declared sizes (bombs)"})
    max_file_bytes: int = field(default=256 * 1024 * 1024, metadata={"help": "refuse larger files"})
    face_margin: float = field(default=0.35, metadata={"help": "room kept around faces, fraction of face size"})
    detect_max_side: int = field(default=384, metadata={"help": "face detection runs on a copy this large"})
    bucket_multiple: int = field(default=8, metadata={"help": "crop=none: round both sides to this multiple"})
    prune: bool = field(default=False, metadata={"help": "delete outputs whose source file is gone"})

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 8 or self.size % 8:
            lo = max(8, (int(self.size) // 8) * 8) if isinstance(self.size, (int, float)) else 512
            raise ValueError(f"size={self.size!r} must be a positive multiple of 8; try {lo} or {lo + 8}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop={self.crop!r} is not one of {', '.join(CROP_MODES)}")
        fmt = {"jpg": "jpeg"}.get(str(self.output_format).lower(), str(self.output_format).lower())
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output_format={self.output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        self.output_format = fmt
        if not 95 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} is below 95; training photos need 95-100")
        if self.min_size < 1:
            raise ValueError(f"min_size={self.min_size} must be at least 1")
        if not 0 <= self.face_margin <= 2:
            raise ValueError(f"face_margin={self.face_margin} must be between 0 and 2 (a fraction of the face size)")
        if self.bucket_multiple < 1:
            raise ValueError(f"bucket_multiple={self.bucket_multiple} must be at least 1")

    def fingerprint(self, detector_name: str) -> str:
        """Hash of every setting that changes output pixels (captions and limits excluded)."""
        keys = (
            "size",
            "crop",
            "output_format",
            "jpeg_quality",
            "allow_upscale",
            "face_margin",
            "detect_max_side",
            "bucket_multiple",
        )
        payload = {k: getattr(self, k) for k in keys}
        payload.update(detector=detector_name if self.crop == "smart" else None, algorithm=ALGORITHM_VERSION)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_source(path: Path, max_bytes: int) -> bytes:
    """Read a source file's bytes or raise :class:`ImageLoadError` (never follows into FIFOs/devices)."""
    name = str(path)
    try:
        st = path.stat()
    except OSError as err:
        why = {
            errno.ELOOP: "symlink loop",
            errno.ENOENT: "broken symlink or file vanished",
            errno.EACCES: "permission denied",
        }.get(err.errno, err.strerror or str(err))
        raise ImageLoadError(name, "unreadable", why) from err
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(name, "not a file", "it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(name, "not a file", "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise ImageLoadError(name, "empty", "zero bytes")
    if st.st_size > max_bytes:
        raise ImageLoadError(name, "too large", f"{st.st_size} bytes exceeds max_file_bytes={max_bytes}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except PermissionError as err:
        raise ImageLoadError(name, "unreadable", "permission denied; allow reading it (chmod u+r)") from err
    except OSError as err:
        raise ImageLoadError(name, "unreadable", err.strerror or str(err)) from err
    if not data:
        raise ImageLoadError(name, "empty", "zero bytes")
    if len(data) > max_bytes:
        raise ImageLoadError(name, "too large", f"more than max_file_bytes={max_bytes} bytes")
    return data


def _output_name(source: str, sha256: str, fmt: str) -> str:
    stem = re.sub(r"[^\w]+", "_", Path(source).stem).strip("_")[:60] or "image"
    return f"{stem}-{sha256[:12]}.{'png' if fmt == 'png' else 'jpg'}"


def _load_manifest(dst: Path) -> dict[str, dict]:
    path = dst / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["entries"])
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("%s is unreadable (%s); every image will be prepared again", path, err)
        return {}


def _save_manifest(dst: Path, manifest: dict[str, dict]) -> None:
    with atomic_write(dst / MANIFEST_NAME, "w") as f:
        json.dump({"version": 1, "entries": manifest}, f, indent=1, ensure_ascii=False, sort_keys=True)


def _sync_caption(image_path: Path, caption: str | None, source: str) -> None:
    """Write the caption sidecar next to a prepared image, or remove a stale one (instance-prompt captions)."""
    txt = image_path.with_suffix(CAPTION_SUFFIX)
    if source in ("sidecar", "filename") and caption:
        if not txt.is_file() or txt.read_text(encoding="utf-8") != caption:
            with atomic_write(txt, "w") as f:
                f.write(caption)
    else:
        with contextlib.suppress(FileNotFoundError):
            txt.unlink()


def _save_image(image: Image.Image, path: Path, options: PrepareOptions) -> None:
    with atomic_write(path, "wb") as f:
        if options.output_format == "png":
            image.save(f, format="PNG")
        else:
            image.save(f, format="JPEG", quality=options.jpeg_quality, subsampling=0)


def _crop(image: Image.Image, options: PrepareOptions, detector: FaceDetector | None) -> CropDecision:
    width, height = image.size
    if options.crop == "none":
        return CropDecision((0, 0, width, height), "none")
    if options.crop == "center":
        return CropDecision(center_box(width, height), "center")
    try:
        return smart_crop(image, detector, options.face_margin, options.detect_max_side)
    except Exception as err:  # noqa: BLE001 - a detector failing on one photo must not stop the batch
        logger.warning("face detection failed (%s: %s); using saliency", type(err).__name__, err)
        decision = smart_crop(image, faces=[])
        return CropDecision(decision.box, decision.method, [], f"face detection failed: {err}")


def _process(data: bytes, options: PrepareOptions, detector: FaceDetector | None):
    """Decode, choose the crop, resize. Returns (output image, decision, upscaled, upright source size)."""
    image = load_image(data, max_pixels=options.max_pixels, min_size=options.min_size)
    decision = _crop(image, options, detector)
    if options.crop == "none":
        upscaled = image.width * image.height < options.size * options.size
        out = resize_keep_aspect(image, options.size, options.bucket_multiple)
    else:
        upscaled = decision.box[2] - decision.box[0] < options.size
        out = crop_and_resize(image, decision.box, options.size)
    return out, decision, upscaled, image.size


def _detector_name(detector: Any) -> str:
    if detector is None:
        return "none"
    return getattr(detector, "__qualname__", None) or type(detector).__qualname__


def prepare_instance_images(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    size: int = 512,
    crop: str = "smart",
    *,
    face_detector: FaceDetector | str | None = None,
    save_report: bool = True,
    progress: bool = True,
    **options: Any,
) -> PrepareReport:
    """Prepare every photo in ``src`` for DreamBooth into ``dst`` and report what happened to each file.

    Args:
        src (`str` or `os.PathLike`): folder of photos (only read, never modified). Sidecar ``name.txt`` captions
            in it are used; sub-folders are not read.
        dst (`str` or `os.PathLike`): output folder (created; must differ from ``src``).
        size (`int`, *optional*, defaults to 512): output side in pixels (multiple of 8).
        crop (`str`, *optional*, defaults to `"smart"`): ``"smart"`` (faces > saliency > centre), ``"center"``, or
            ``"none"`` (keep the aspect ratio at about ``size * size`` pixels, for bucketing).
        face_detector (`FaceDetector` or `str`, *optional*): ``None``/``"haar"`` for OpenCV Haar cascades, or any
            callable ``(PIL.Image) -> list[FaceBox]`` (e.g. a [`PipelineFaceDetector`]).
        save_report (`bool`, *optional*, defaults to `True`): also write ``dst/prepare_report.json``.
        progress (`bool`, *optional*, defaults to `True`): tqdm progress bar (shown on terminals only).
        **options: any other [`PrepareOptions`] field (``output_format``, ``instance_prompt``,
            ``caption_from_filename``, ``min_size``, ``allow_upscale``, ``prune``, ...).

    Returns:
        [`PrepareReport`]: one entry per source file.

    Raises:
        `FileNotFoundError`: ``src`` is not a folder. `ValueError`: bad options, or ``dst`` is ``src``.

    >>> report = prepare_instance_images("photos", "instance_images", size=512, instance_prompt="a photo of sks dog")
    >>> report.counts()
    {'accepted': 5, 'rejected': 1, 'skipped': 0, 'duplicate': 0, 'upscaled': 1}
    """
    from tqdm.auto import tqdm

    opts = PrepareOptions(size=size, crop=crop, **options)
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found (or not a folder)")
    if dst.resolve() == src.resolve():
        raise ValueError(f"dst {dst} is the source folder; choose a separate output folder")
    start = time.perf_counter()
    detector = get_face_detector(face_detector) if opts.crop == "smart" else None
    fingerprint = opts.fingerprint(_detector_name(detector))
    dst.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(dst)
    report = PrepareReport(str(src), str(dst), asdict(opts))
    seen: dict[str, str] = {}  # sha256 -> first source name with that content in this run
    names = sorted(os.listdir(src))
    try:
        for name in tqdm(names, desc="prepare", unit="file", disable=None if progress else True):
            entry = _prepare_one(src / name, dst, opts, detector, fingerprint, manifest, seen)
            if entry is not None:
                report.entries.append(entry)
                if entry.status == "rejected":
                    logger.info("rejected %s: %s: %s", name, entry.reason, entry.detail)
        if opts.prune:
            for sha in [s for s in manifest if s not in seen]:
                old = dst / manifest.pop(sha)["output"]
                for path in (old, old.with_suffix(CAPTION_SUFFIX)):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                report.removed.append(str(old))
    finally:
        _save_manifest(dst, manifest)
    report.seconds = round(time.perf_counter() - start, 3)
    if save_report:
        report.to_json(dst / REPORT_NAME)
    logger.info("prepare: %s", report.summary())
    return report


def _prepare_one(
    path: Path,
    dst: Path,
    opts: PrepareOptions,
    detector: FaceDetector | None,
    fingerprint: str,
    manifest: dict[str, dict],
    seen: dict[str, str],
) -> PrepareEntry | None:
    name = path.name
    suffix = path.suffix.lower()
    if suffix == CAPTION_SUFFIX:
        return None  # a caption sidecar, read with its image
    if name.startswith("."):
        return PrepareEntry(name, "skipped", note="hidden file")
    if suffix not in IMAGE_EXTENSIONS:
        if path.is_dir():
            return PrepareEntry(name, "skipped", note="folder (sub-folders are not read)")
        return PrepareEntry(name, "skipped", note=f"not an image file name ({suffix or 'no extension'})")
    try:
        data = _read_source(path, opts.max_file_bytes)
    except ImageLoadError as err:
        return PrepareEntry(name, "rejected", err.reason, err.detail)
    sha = hashlib.sha256(data).hexdigest()
    if sha in seen:
        return PrepareEntry(name, "duplicate", sha256=sha, duplicate_of=seen[sha], note=f"same bytes as {seen[sha]}")
    seen[sha] = name
    try:
        caption, caption_source = resolve_caption(path, opts.instance_prompt, opts.caption_from_filename)
    except (ValueError, OSError) as err:
        return PrepareEntry(name, "rejected", "bad caption", str(err), sha256=sha)
    prev = manifest.get(sha)
    if prev and prev.get("fingerprint") == fingerprint and (dst / prev["output"]).is_file():
        out = dst / prev["output"]
        _sync_caption(out, caption, caption_source)
        prev.update(source=name, caption=caption, caption_source=caption_source)
        keep = ("original_size", "faces", "crop_box", "crop_method", "output_size", "upscaled")
        return PrepareEntry(
            name,
            "skipped",
            sha256=sha,
            note="unchanged since the last run",
            output=str(out),
            caption=caption,
            caption_source=caption_source,
            **{k: prev.get(k) for k in keep},
        )
    try:
        image, decision, upscaled, original_size = _process(data, opts, detector)
    except ImageLoadError as err:
        return PrepareEntry(name, "rejected", err.reason, err.detail, sha256=sha)
    except Exception as err:  # noqa: BLE001 - decoder bugs on hostile files become a rejection, not a crash
        logger.debug("decoding %s failed", path, exc_info=True)
        return PrepareEntry(name, "rejected", "corrupt", f"{type(err).__name__}: {err}", sha256=sha)
    if upscaled and not opts.allow_upscale:
        return PrepareEntry(
            name, "rejected", "too small", f"smaller than size={opts.size} and allow_upscale=False", sha256=sha
        )
    out = dst / _output_name(name, sha, opts.output_format)
    _save_image(image, out, opts)
    if prev and prev.get("output") and prev["output"] != out.name:  # e.g. the output format changed
        for stale in (dst / prev["output"], (dst / prev["output"]).with_suffix(CAPTION_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    _sync_caption(out, caption, caption_source)
    record = {
        "source": name,
        "output": out.name,
        "fingerprint": fingerprint,
        "original_size": list(original_size),
        "faces": [{**f.as_box(), "score": f.score} for f in decision.faces],
        "crop_box": list(decision.box),
        "crop_method": decision.method,
        "output_size": list(image.size),
        "upscaled": upscaled,
        "caption": caption,
        "caption_source": caption_source,
    }
    manifest[sha] = record
    fields_ = {k: record[k] for k in ("original_size", "faces", "crop_box", "crop_method", "output_size", "upscaled")}
    return PrepareEntry(
        name,
        "accepted",
        sha256=sha,
        note=decision.note,
        output=str(out),
        caption=caption,
        caption_source=caption_source,
        **fields_,
    )
