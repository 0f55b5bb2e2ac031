import io

import numpy as np
import pytest
from PIL import Image

from hfvision.data import FaceBox, HaarFaceDetector, ImageLoadError, PipelineFaceDetector, load_image
from hfvision.testing import sample_image


def test_haar_finds_exactly_the_astronauts_face_and_no_cat_face():
    detector = HaarFaceDetector()
    boxes = detector(sample_image("astronaut"))
    assert len(boxes) == 1
    b = boxes[0]
    # the face of skimage's astronaut spans roughly x 180-270, y 70-160
    assert b.xmin <= 190 and b.xmax >= 260 and b.ymin <= 80 and b.ymax >= 150
    assert b.width < 150 and 0 < b.score <= 1
    assert detector(sample_image("chelsea")) == []


def test_pipeline_detector_adapter_filters_labels_and_merges_overlaps():
    def fake(image, threshold):
        box = {"xmin": 10, "ymin": 10, "xmax": 50, "ymax": 50}
        return [
            {"label": "face", "score": 0.9, "box": box},
            {"label": "Face", "score": 0.8, "box": box},
            {"label": "cat", "score": 0.99, "box": {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}},
        ]

    assert PipelineFaceDetector(fake)(Image.new("RGB", (64, 64))) == [FaceBox(10, 10, 50, 50, 0.9)]


def test_facebox_expand_clips_to_image():
    assert FaceBox(10, 10, 30, 30).expand(0.5, 35, 100) == FaceBox(0, 0, 35, 40)


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_load_image_converts_modes_to_rgb():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(_png(rgba)).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert load_image(_png(sixteen)).getpixel((0, 0)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    r, g, b = load_image(buf.getvalue()).getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60


def test_load_image_applies_exif_orientation():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    assert load_image(buf.getvalue()).size == (20, 40)
    # upright RGB images are returned as they are (exif_transpose would copy them)
    upright = Image.new("RGB", (40, 20), (1, 2, 3))
    assert load_image(upright) is upright and upright.size == (40, 20)
    exif[0x0112] = 1  # explicitly upright
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    assert load_image(buf.getvalue()).size == (40, 20)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not an image"),
        (_png(Image.new("RGB", (64, 64)))[:60], "truncated"),
    ],
)
def test_load_image_rejects_bad_bytes_with_a_reason(data, reason):
    with pytest.raises(ImageLoadError) as info:
        load_image(data)
    assert info.value.reason in (reason, "corrupt")
    assert reason in str(info.value) or info.value.reason == "corrupt"


def test_load_image_refuses_bombs_before_decoding(tmp_path):
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(_png(Image.new("L", (3000, 3000))), max_pixels=1_000_000)
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="dir.jpg: not a file"):
        load_image(tmp_path / "dir.jpg")


def _brute_force_nms(boxes, threshold):
    def iou(a, b):
        ix = max(0, min(a.xmax, b.xmax) - max(a.xmin, b.xmin))
        iy = max(0, min(a.ymax, b.ymax) - max(a.ymin, b.ymin))
        union = a.width * a.height + b.width * b.height - ix * iy
        return ix * iy / union if union else 0.0

    kept = []
    for box in sorted(boxes, key=lambda b: b.score, reverse=True):
        if all(iou(box, k) <= threshold for k in kept):
            kept.append(box)
    return kept


def test_non_max_suppression_keeps_the_best_box_of_each_overlapping_group():
    from hfvision.data.faces import non_max_suppression

    rng = np.random.default_rng(0)
    for _ in range(300):
        boxes = []
        for _ in range(rng.integers(0, 8)):
            x, y, w, h = (int(v) for v in rng.integers([0, 0, 1, 1], [50, 50, 30, 30]))
            boxes.append(FaceBox(x, y, x + w, y + h, float(rng.random())))
        assert non_max_suppression(boxes, 0.3) == _brute_force_nms(boxes, 0.3)
