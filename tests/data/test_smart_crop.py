import random

import numpy as np
import pytest
from PIL import Image

from hfvision.data import FaceBox, smart_crop
from hfvision.data.smart_crop import center_box, detect_faces, face_crop, saliency_crop, square_containing
from hfvision.testing import sample_image


def contains(outer, inner) -> bool:
    x0, y0, x1, y1 = outer
    return x0 <= inner.xmin and y0 <= inner.ymin and x1 >= inner.xmax and y1 >= inner.ymax


def assert_valid_square(box, width, height):
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 == min(width, height)
    assert 0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height


@pytest.mark.parametrize("size", [(400, 200), (200, 400), (1000, 180), (300, 300)])
@pytest.mark.parametrize("where", ["left", "right", "top", "bottom", "top-left", "bottom-right", "middle"])
def test_a_face_near_any_border_is_kept_whole(size, where):
    width, height = size
    fw = min(width, height) // 3
    x = {"left": 0, "right": width - fw, "top-left": 0, "bottom-right": width - fw}.get(where, (width - fw) // 2)
    y = {"top": 0, "bottom": height - fw, "top-left": 0, "bottom-right": height - fw}.get(where, (height - fw) // 2)
    face = FaceBox(x, y, x + fw, y + fw, 0.9)
    decision = smart_crop(Image.new("RGB", size, "gray"), detector=lambda im: [face], detect_max_side=None)
    assert decision.method == "faces" and decision.faces == [face]
    assert_valid_square(decision.box, width, height)
    assert contains(decision.box, face)
    # with the default margin the grown box fits too, so it is kept as well
    assert contains(decision.box, face.expand(0.35, width, height)) and decision.note == ""


def test_square_containing_agrees_with_brute_force():
    """Reference computation: try every square position; the function must find one whenever one exists."""
    rng = random.Random(0)
    for _ in range(400):
        width, height = rng.randint(8, 120), rng.randint(8, 120)
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (x0, y0, rng.randint(x0 + 1, width), rng.randint(y0 + 1, height))
        side = min(width, height)
        exists = any(
            left <= box[0] and left + side >= box[2] and top <= box[1] and top + side >= box[3]
            for left in range(width - side + 1)
            for top in range(height - side + 1)
        )
        got = square_containing(width, height, box)
        assert (got is not None) == exists, (width, height, box)
        if got is not None:
            assert_valid_square(got, width, height)
            assert contains(got, FaceBox(*box))


def test_faces_too_far_apart_keep_the_largest_one_whole():
    left, right = FaceBox(0, 50, 60, 110, 0.99), FaceBox(520, 40, 600, 120, 0.5)
    decision = face_crop(600, 200, [left, right])
    assert contains(decision.box, right) and not contains(decision.box, left)
    assert "2 faces" in decision.note


def test_a_face_larger_than_the_square_is_centred_on():
    decision = face_crop(300, 100, [FaceBox(100, 0, 220, 100)])
    assert decision.box == (110, 0, 210, 100) and decision.note == "face larger than the crop"


def test_saliency_moves_the_crop_to_the_detailed_region_and_flat_images_are_centred():
    rng = np.random.default_rng(0)
    arr = np.full((120, 480, 3), 128, dtype=np.uint8)
    arr[20:100, 380:460] = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)  # texture near the right border
    box = saliency_crop(Image.fromarray(arr))
    assert box is not None and box[0] <= 380 and box[2] >= 460
    tall = Image.fromarray(np.ascontiguousarray(arr.transpose(1, 0, 2)))  # same thing along the vertical axis
    box = saliency_crop(tall)
    assert box is not None and box[1] <= 380 and box[3] >= 460
    flat = Image.new("RGB", (480, 120), "gray")
    assert saliency_crop(flat) is None
    decision = smart_crop(flat, detector=lambda im: [])
    assert decision.method == "center" and decision.box == center_box(480, 120) == (180, 0, 300, 120)


def test_astronauts_haar_face_ends_up_inside_the_crop(haar):
    """The astronaut on the left of a wide canvas whose right half is busier (so saliency alone would go right)."""
    canvas = np.full((512, 1400, 3), 90, dtype=np.uint8)
    yy, xx = np.mgrid[0:512, 0:512]
    canvas[:, 888:] = (((yy // 32 + xx // 32) % 2) * 255)[..., None]  # a checkerboard: more edges than the photo
    canvas[:, :512] = np.asarray(sample_image("astronaut"))
    image = Image.fromarray(canvas)
    assert saliency_crop(image)[0] > 300  # the decoy works: without faces the crop would leave the face out
    decision = smart_crop(image, detector=haar)
    assert decision.method == "faces" and len(decision.faces) == 1
    face = decision.faces[0]
    assert 150 <= face.xmin and face.xmax <= 300 and 50 <= face.ymin and face.ymax <= 180  # where the face is
    assert contains(decision.box, face.expand(0.35, *image.size))
    assert_valid_square(decision.box, *image.size)


def test_detection_on_a_downscaled_copy_maps_boxes_back_to_the_image():
    seen = []

    def detector(image):  # a face covering the middle third of whatever it is given
        seen.append(image.size)
        w, h = image.size
        return [FaceBox(w // 3, h // 3, 2 * w // 3, 2 * h // 3)]

    faces = detect_faces(Image.new("RGB", (1200, 600)), detector, max_side=300)
    assert seen == [(300, 150)]
    assert faces == [FaceBox(400, 200, 800, 400)]
