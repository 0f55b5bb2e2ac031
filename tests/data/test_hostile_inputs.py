"""A hostile source folder, generated in code: every file gets a correct result or a clear rejection, nothing
crashes or hangs, and the source folder is byte-for-byte (and mode/mtime) unchanged afterwards."""

import builtins
import errno
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hfvision.data import prepare_instance_images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A 60-byte PNG whose header declares width x height RGB pixels (10 gigapixels by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def build_corpus(src):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    files = {
        "empty.jpg": b"",
        "truncated.jpg": encode(photo, "JPEG", quality=90)[:400],
        "truncated.png": encode(photo, "PNG")[:300],
        "text.jpg": b"just some notes, not a photo\n",
        "page.png": b"<!DOCTYPE html><html><body>hi</body></html>",
        "drawing.png": b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
        "bomb.png": bomb_png(),
        "one-pixel.png": encode(Image.new("RGB", (1, 1), "red"), "PNG"),
        # 16-bit grey: a horizontal ramp 0..65535
        "deep.png": encode(Image.fromarray(np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (96, 1))), "PNG"),
        "cmyk.jpg": encode(Image.new("CMYK", (128, 96), (0, 255, 255, 0)), "JPEG", quality=95),  # red
        "grey.png": encode(Image.new("L", (128, 96), 77), "PNG"),
    }
    palette = Image.new("P", (128, 96), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 64, 96))  # left half: index 0, transparent
    files["palette.png"] = encode(palette, "PNG", transparency=0)
    # stored 128x96 with a red top row band; EXIF 6 = rotate 90 CW on display -> upright 96x128, red band on the right
    stored = Image.new("RGB", (128, 96), "blue")
    stored.paste((255, 0, 0), (0, 0, 128, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["rotated.jpg"] = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    frames = [Image.new("RGB", (128, 96), c) for c in ((0, 200, 0), (200, 0, 200), (0, 0, 200))]
    files["animated.gif"] = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["notes.md"] = b"# not an image"
    files[".DS_Store"] = b"\0\0\0\1Bud1"
    for name, data in files.items():
        (src / name).write_bytes(data)
    os.symlink("loop-b.jpg", src / "loop-a.jpg")
    os.symlink("loop-a.jpg", src / "loop-b.jpg")
    os.symlink("does-not-exist.jpg", src / "dangling.jpg")
    (src / "folder.jpg").mkdir()
    (src / "folder.jpg" / "inside.jpg").write_bytes(encode(photo, "JPEG"))
    (src / "sub").mkdir()
    os.mkfifo(src / "pipe.jpg")  # reading it would block forever


# name -> (status, reason); accepted files are checked further below
EXPECTED = {
    "empty.jpg": ("rejected", "empty"),
    "truncated.jpg": ("rejected", "truncated"),
    "truncated.png": ("rejected", "truncated"),
    "text.jpg": ("rejected", "not an image"),
    "page.png": ("rejected", "not an image"),
    "drawing.png": ("rejected", "not an image"),
    "bomb.png": ("rejected", "decompression bomb"),
    "one-pixel.png": ("rejected", "too small"),
    "loop-a.jpg": ("rejected", "unreadable"),
    "loop-b.jpg": ("rejected", "unreadable"),
    "dangling.jpg": ("rejected", "unreadable"),
    "folder.jpg": ("rejected", "not a file"),
    "pipe.jpg": ("rejected", "not a file"),
    "deep.png": ("accepted", ""),
    "cmyk.jpg": ("accepted", ""),
    "grey.png": ("accepted", ""),
    "palette.png": ("accepted", ""),
    "rotated.jpg": ("accepted", ""),
    "animated.gif": ("accepted", ""),
    "notes.md": ("skipped", ""),
    ".DS_Store": ("skipped", ""),
    "sub": ("skipped", ""),
}


def test_hostile_corpus_gets_a_result_or_a_clear_rejection_and_the_source_is_untouched(
    tmp_path, tree_digest, no_faces
):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    build_corpus(src)
    before = tree_digest(src)
    report = prepare_instance_images(src, dst, size=64, face_detector=no_faces)
    assert tree_digest(src) == before

    got = {e.source: (e.status, e.reason) for e in report.entries}
    assert got == EXPECTED
    for e in report.rejected:
        assert e.detail and "\n" not in e.detail, e  # a one-line explanation
    details = {e.source: e.detail for e in report.entries}
    assert details["loop-a.jpg"] == "symlink loop" and details["page.png"] == "looks like HTML"
    assert details["drawing.png"] == "looks like SVG" and "10000000000" in details["bomb.png"]
    assert details["pipe.jpg"].startswith("not a regular file")

    def out(name):
        return np.asarray(Image.open(report.entry(name).output))

    assert all(out(e.source).shape == (64, 64, 3) for e in report.accepted)
    ramp = out("deep.png")[32, :, 0]  # 16-bit ramp scaled to 8 bits, centre-cropped 96 of 128 columns
    assert 30 <= ramp[0] <= 40 and 215 <= ramp[-1] <= 225 and np.all(np.diff(ramp.astype(int)) >= 0)
    r, g, b = out("cmyk.jpg")[32, 32]
    assert r > 200 and g < 60 and b < 60
    assert np.all(out("grey.png") == 77)
    pal = out("palette.png")
    assert tuple(pal[32, 2]) == (255, 255, 255) and tuple(pal[32, 61]) == (0, 0, 255)  # transparent -> white
    rot = out("rotated.jpg")  # upright: the red band is on the right edge
    assert rot[32, 60, 0] > 200 and rot[32, 60, 2] < 60 and rot[32, 5, 2] > 200 and rot[32, 5, 0] < 60
    assert report.entry("rotated.jpg").original_size == (96, 128)
    assert np.abs(out("animated.gif").astype(int) - (0, 200, 0)).max() <= 2  # the first frame
    # a re-run over the same corpus is still quiet, and the source is still untouched
    again = prepare_instance_images(src, dst, size=64, face_detector=no_faces)
    assert {e.source: e.status for e in again.entries if e.status != "rejected"} == {
        **{n: "skipped" for n, (s, _) in EXPECTED.items() if s != "rejected"}
    }
    assert tree_digest(src) == before


def test_unreadable_file_is_rejected_with_permission_denied(tmp_path, monkeypatch, tree_digest, no_faces):
    """chmod 000 does not stop root, and these tests usually run as root: then the denial is simulated at the
    ``open()`` call (the only way the preparer reads files), which is what the kernel's EACCES looks like."""
    src = tmp_path / "src"
    src.mkdir()
    locked = src / "locked.jpg"
    locked.write_bytes(encode(Image.new("RGB", (80, 80), "red"), "JPEG"))
    locked.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def deny(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(locked):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", deny)
    before = tree_digest(src)
    report = prepare_instance_images(src, tmp_path / "dst", size=64, face_detector=no_faces)
    monkeypatch.undo()
    entry = report.entry("locked.jpg")
    assert (entry.status, entry.reason) == ("rejected", "unreadable") and "permission denied" in entry.detail
    assert tree_digest(src) == before


@pytest.mark.parametrize("cut", [2, 50, 200])
def test_truncated_at_any_point_is_a_rejection_not_a_crash(tmp_path, cut, no_faces):
    src = tmp_path / "src"
    src.mkdir()
    data = encode(Image.new("RGB", (100, 100), "teal"), "PNG")
    (src / "cut.png").write_bytes(data[:cut])
    (src / "cut.jpg").write_bytes(encode(Image.new("RGB", (100, 100), "teal"), "JPEG")[:cut])
    report = prepare_instance_images(src, tmp_path / "dst", size=64, face_detector=no_faces)
    assert [e.status for e in report.entries] == ["rejected", "rejected"]
    assert {e.reason for e in report.entries} <= {"truncated", "corrupt", "not an image"}
