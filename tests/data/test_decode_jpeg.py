"""decode_jpeg, the OpenCV fast path for JPEG photos: pixels exactly equal to load_image's for every JPEG it takes,
and ``None`` (load_image decides) for everything else; jpeg_frame reads the frame header."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hfvision.data.image_io import ImageLoadError, decode_jpeg, jpeg_frame, load_image
from hfvision.testing import sample_image

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def photo():
    """A small non-square photo with odd sides (97x61): chroma subsampling has a half block at the edges."""
    return sample_image("chelsea").resize((97, 61), Image.BICUBIC)


def jpeg(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def with_orientation(image: Image.Image, k: int, **kwargs) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = k
    return jpeg(image, exif=ex, **kwargs)


def assert_same_as_load_image(data: bytes) -> np.ndarray:
    want = np.asarray(load_image(data))
    got = decode_jpeg(data)
    assert got is not None, "decode_jpeg refused a plain 8-bit JPEG"
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, (got.dtype, got.shape)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want), (
        f"{int((got != want).sum())} values differ (max {np.abs(got.astype(int) - want).max()})"
    )
    return got


# -- equal pixels ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", range(1, 9))
def test_exif_orientations_equal_load_image(photo, k):
    data = with_orientation(photo, k, quality=90)
    got = assert_same_as_load_image(data)
    upright = (61, 97) if k <= 4 else (97, 61)  # 5-8 swap width and height
    assert got.shape[:2] == upright


@pytest.mark.parametrize("k", [3, 6, 8])
def test_exif_orientation_on_grayscale_and_progressive(photo, k):
    assert_same_as_load_image(with_orientation(photo.convert("L"), k))
    assert_same_as_load_image(with_orientation(photo, k, progressive=True, subsampling=2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"progressive": True},
        {"progressive": True, "quality": 30},
        {"subsampling": 0},
        {"subsampling": 1},
        {"subsampling": 2},
        {"subsampling": 2, "quality": 100},
        {"quality": 1},
        {"quality": 50},
        {"quality": 95},
        {"optimize": True},
    ],
    ids=str,
)
def test_encoder_variants_equal_load_image(photo, kwargs):
    assert_same_as_load_image(jpeg(photo, **kwargs))


def test_grayscale_jpeg_is_three_equal_channels(photo):
    data = jpeg(photo.convert("L"))
    assert jpeg_frame(data)[2] == 1
    got = assert_same_as_load_image(data)
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (40, 1), (3, 17), (17, 3), (8, 8), (16, 9)])
def test_tiny_and_thin_images(size):
    image = sample_image("coffee").resize(size)
    for kwargs in ({}, {"subsampling": 2}, {"progressive": True}):
        got = assert_same_as_load_image(jpeg(image, **kwargs))
        assert got.shape == (size[1], size[0], 3)


def test_larger_photo_equals_load_image():
    assert_same_as_load_image(jpeg(sample_image("astronaut"), quality=85))  # 512x512, 4:2:0


def _insert_after_jfif(data: bytes, segment: bytes) -> bytes:
    end = 4 + int.from_bytes(data[4:6], "big")  # SOI + APP0 (JFIF)
    return data[:end] + segment + data[end:]


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


@pytest.mark.parametrize("k", [3, 6, 8])
def test_exif_in_big_endian_tiff_and_after_other_segments(photo, k):
    ifd = (1).to_bytes(2, "big") + bytes.fromhex("0112 0003 00000001") + k.to_bytes(2, "big") + b"\0\0" + bytes(4)
    big_endian = _app1(b"Exif\0\0MM\x00\x2a" + (8).to_bytes(4, "big") + ifd)
    xmp = _app1(b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>")
    plain = jpeg(photo)
    for data in (_insert_after_jfif(plain, big_endian), _insert_after_jfif(plain, xmp + big_endian)):
        got = assert_same_as_load_image(data)
        assert got.shape[:2] == ((61, 97) if k <= 4 else (97, 61))


def test_doubled_exif_header_is_rotated_like_load_image(photo):
    ex = Image.Exif()
    ex[0x0112] = 6
    data = _insert_after_jfif(jpeg(photo), _app1(b"Exif\0\0" + ex.tobytes()))  # tobytes() starts with Exif\0\0 too
    assert load_image(data).size == (61, 97)  # PIL: rotated
    assert decode_jpeg(data) is None  # left to load_image, which reads the orientation
    # also when the doubled header comes after 64 KiB of other segments (two comments of ~32 KiB)
    comments = (b"\xff\xfe" + (32_002).to_bytes(2, "big") + b"c" * 32_000) * 2
    late = _insert_after_jfif(jpeg(photo), comments + _app1(b"Exif\0\0" + ex.tobytes()))
    assert load_image(late).size == (61, 97)
    assert decode_jpeg(late) is None


# -- the IMREAD_COLOR_RGB fallback (OpenCV < 4.11): BGR decode then cvtColor ------------------------------------------
def test_bgr_fallback_without_imread_color_rgb(photo, monkeypatch):
    cases = [jpeg(photo), jpeg(photo.convert("L")), jpeg(photo, progressive=True), with_orientation(photo, 6)]
    monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB", raising=False)
    assert not hasattr(cv2, "IMREAD_COLOR_RGB")
    for data in cases:
        assert_same_as_load_image(data)


# -- None for what the fast path does not take -----------------------------------------------------------------------
def test_png_and_other_formats_are_left_to_load_image(photo):
    for fmt in ("PNG", "WEBP", "BMP", "GIF"):
        buf = io.BytesIO()
        photo.save(buf, fmt)
        data = buf.getvalue()
        assert jpeg_frame(data) is None
        assert decode_jpeg(data) is None
        assert load_image(data).size == (97, 61)


def test_cmyk_jpeg_is_left_to_load_image(photo):
    data = jpeg(photo.convert("CMYK"))
    assert jpeg_frame(data) == (61, 97, 4, 8)
    assert decode_jpeg(data) is None
    image = load_image(data)  # load_image still decodes it
    assert image.mode == "RGB" and image.size == (97, 61)


def test_truncated_jpeg_is_none_and_load_image_says_truncated(photo):
    data = jpeg(sample_image("astronaut"), quality=90)
    half = data[: len(data) // 2]
    with pytest.raises(ImageLoadError) as err:
        load_image(half)
    assert err.value.reason == "truncated"
    assert decode_jpeg(half) is None


@pytest.mark.parametrize("cut", [2, 4, 20, 100, 300])
def test_jpeg_cut_inside_its_headers(photo, cut):
    data = jpeg(photo)[:cut]
    assert decode_jpeg(data) is None
    with pytest.raises(ImageLoadError):
        load_image(data)


def _corrupt_huffman_table(data: bytes) -> bytes:
    """The first DHT segment's code counts set to 0xFF: an invalid Huffman table (libjpeg refuses it)."""
    i = data.index(b"\xff\xc4")
    return data[: i + 5] + b"\xff" * 16 + data[i + 21 :]


def _corrupt_scan_header(data: bytes) -> bytes:
    """The scan header names a component the frame does not have."""
    i = data.index(b"\xff\xda")
    return data[: i + 5] + b"\x09" + data[i + 6 :]


@pytest.mark.parametrize("corrupt", [_corrupt_huffman_table, _corrupt_scan_header])
def test_corrupt_jpeg_is_none_where_load_image_raises(photo, corrupt):
    data = corrupt(jpeg(photo))
    with pytest.raises(ImageLoadError):
        load_image(data)
    assert decode_jpeg(data) is None


def test_over_max_pixels_is_none_and_load_image_says_bomb(photo):
    data = jpeg(photo)  # 97 x 61 = 5917 px
    assert decode_jpeg(data, max_pixels=5917) is not None
    assert decode_jpeg(data, max_pixels=5916) is None
    with pytest.raises(ImageLoadError) as err:
        load_image(data, max_pixels=5916)
    assert err.value.reason == "decompression bomb"
    assert decode_jpeg(data, max_pixels=None) is not None


def test_min_size_above_the_shorter_side_is_none(photo):
    for data in (jpeg(photo), with_orientation(photo, 6)):
        assert decode_jpeg(data, min_size=61) is not None
        assert decode_jpeg(data, min_size=62) is None
        with pytest.raises(ImageLoadError) as err:
            load_image(data, min_size=62)
        assert err.value.reason == "too small"


def test_empty_and_random_bytes():
    assert jpeg_frame(b"") is None and decode_jpeg(b"") is None
    with pytest.raises(ImageLoadError) as err:
        load_image(b"")
    assert err.value.reason == "empty"
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 1000, 20000):
        for _ in range(20):
            data = b"\xff\xd8\xff" + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            assert decode_jpeg(data) is None, data[:16]
            with pytest.raises(ImageLoadError):
                load_image(data)


def test_header_only_jpeg_with_no_scan_data(photo):
    data = jpeg(photo)
    headers = data[: data.index(b"\xff\xda")] + b"\xff\xd9"  # everything up to the scan, then EOI
    assert jpeg_frame(headers) == (61, 97, 3, 8)
    assert decode_jpeg(headers) is None
    with pytest.raises(ImageLoadError):
        load_image(headers)


def _replace_sof(data: bytes, marker: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[: i + 1] + bytes([marker]) + data[i + 2 :]


@pytest.mark.parametrize("marker", [0xC3, 0xC5, 0xC9, 0xCA, 0xCB, 0xCD])
def test_lossless_arithmetic_and_hierarchical_frames_are_refused(photo, marker):
    data = _replace_sof(jpeg(photo), marker)
    assert jpeg_frame(data) is None
    assert decode_jpeg(data) is None


def test_twelve_bit_frame_is_refused(photo):
    data = jpeg(photo)
    i = data.index(b"\xff\xc0")
    twelve = data[: i + 4] + b"\x0c" + data[i + 5 :]
    assert jpeg_frame(twelve) == (61, 97, 3, 12)
    assert decode_jpeg(twelve) is None


# -- jpeg_frame ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "kwargs", "sof"),
    [
        ("RGB", {}, 0xC0),
        ("RGB", {"progressive": True}, 0xC2),
        ("L", {}, 0xC0),
        ("L", {"progressive": True}, 0xC2),
    ],
)
def test_jpeg_frame_reads_the_frame_header(photo, mode, kwargs, sof):
    data = jpeg(photo.convert(mode), **kwargs)
    assert bytes([0xFF, sof]) in data
    components = 3 if mode == "RGB" else 1
    assert jpeg_frame(data) == (61, 97, components, 8)
    assert jpeg_frame(with_orientation(photo.convert(mode), 6, **kwargs)) == (61, 97, components, 8)  # stored size


def test_jpeg_frame_extended_sequential_sof1(photo):
    data = _replace_sof(jpeg(photo), 0xC1)  # SOF1 with 8-bit Huffman tables decodes like baseline
    assert jpeg_frame(data) == (61, 97, 3, 8)
    assert_same_as_load_image(data)


def test_jpeg_frame_is_none_for_non_jpeg(photo):
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    for data in (buf.getvalue(), b"", b"\xff", b"\xff\xd8", b"GIF89a", b"\xff\xd8\xff", b"hello world"):
        assert jpeg_frame(data) is None, data[:8]
