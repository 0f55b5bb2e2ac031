"""Face-first mode: detect faces, classify each crop, and return boxes with per-face labels."""

from __future__ import annotations

import pytest

from hfvision.data import FaceBox

# Hand-located landmarks of skimage's astronaut (512 x 512): both eyes and the mouth.
ASTRONAUT_LANDMARKS = [(208, 110), (244, 110), (226, 146)]


def test_astronaut_has_exactly_one_face_classified_like_its_crop(gender_pipe, images):
    faces = gender_pipe(images[0], faces=True)
    assert len(faces) == 1
    face = faces[0]
    box = face["box"]
    assert set(face) == {"box", "score_face", "labels"} and set(box) == {"xmin", "ymin", "xmax", "ymax"}
    for x, y in ASTRONAUT_LANDMARKS:
        assert box["xmin"] <= x < box["xmax"] and box["ymin"] <= y < box["ymax"]
    assert (box["xmax"] - box["xmin"]) * (box["ymax"] - box["ymin"]) < 0.1 * 512 * 512  # the face, not the body
    assert 0 < face["score_face"] <= 1
    # labels: the pipeline run on the crop with the default 25% margin
    w, h = box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]
    dx, dy = round(w * 0.25), round(h * 0.25)
    crop = images[0].crop(
        (max(0, box["xmin"] - dx), max(0, box["ymin"] - dy), min(512, box["xmax"] + dx), min(512, box["ymax"] + dy))
    )
    assert face["labels"] == gender_pipe(crop)


def test_no_face_gives_an_empty_list(gender_pipe, images):
    assert gender_pipe(images[1], faces=True) == []  # chelsea the cat: the Haar cascades find no face


def test_pluggable_detectors_and_margin(gender_pipe, images, same_predictions):
    two = lambda image: [FaceBox(10, 10, 60, 70, 0.9), FaceBox(200, 100, 260, 170, 0.8)]  # noqa: E731
    faces = gender_pipe(images[2], faces=True, face_detector=two, face_margin=0.0)
    assert [f["box"] for f in faces] == [b.as_box() for b in two(None)]
    same_predictions(faces[1]["labels"], gender_pipe(images[2].crop((200, 100, 260, 170))))  # 2 crops, 1 batch
    assert [f["score_face"] for f in faces] == [0.9, 0.8]
    # lists: one result list per image (a batch_size is accepted; each image's crops form the batch)
    listed = gender_pipe([images[2], images[3]], faces=True, face_detector=two, face_margin=0.0, batch_size=4)
    assert listed[0] == faces and [f["box"] for f in listed[1]] == [b.as_box() for b in two(None)]
    assert gender_pipe(images[2], faces=True, face_detector=lambda image: []) == []

    class FakeDetectionPipeline:  # the interface of a transformers object-detection pipeline
        task = "object-detection"

        def __call__(self, image, threshold=0.5):
            return [
                {"label": "face", "score": 0.97, "box": {"xmin": 5, "ymin": 6, "xmax": 50, "ymax": 60}},
                {"label": "hand", "score": 0.99, "box": {"xmin": 0, "ymin": 0, "xmax": 9, "ymax": 9}},
            ]

    faces = gender_pipe(images[2], faces=True, face_detector=FakeDetectionPipeline())
    assert [(f["box"], f["score_face"]) for f in faces] == [({"xmin": 5, "ymin": 6, "xmax": 50, "ymax": 60}, 0.97)]
    with pytest.raises(ValueError, match="face_margin=-0.1 must be >= 0"):
        gender_pipe(images[2], faces=True, face_detector=two, face_margin=-0.1)
