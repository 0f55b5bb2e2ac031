import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hfvision.data import FaceBox, PrepareOptions, PrepareReport, load_image, prepare_instance_images
from hfvision.data.prepare import MANIFEST_NAME, REPORT_NAME
from hfvision.testing import sample_image


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    sample_image("chelsea").save(src / "cat (1).jpg", quality=92)  # 451x300
    sample_image("rocket").save(src / "rocket.png")  # 640x427
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(src / "small.png")
    (src / "rocket.txt").write_text("a rocket on its launch pad")
    return src


def test_outputs_are_the_reported_crop_resized_and_captioned(photos, tmp_path, no_faces):
    dst = tmp_path / "out"
    report = prepare_instance_images(photos, dst, size=128, face_detector=no_faces, instance_prompt="a photo of sks")
    assert [e.source for e in report.entries] == ["cat (1).jpg", "rocket.png", "small.png"]
    assert report.counts() == {"accepted": 3, "rejected": 0, "skipped": 0, "duplicate": 0, "upscaled": 1}
    for entry in report.entries:
        out = Image.open(entry.output)
        assert out.format == "PNG" and out.size == (128, 128) and out.mode == "RGB"
        # reference computation: the reported box of the upright source, Lanczos-resized in one step
        source = load_image(photos / entry.source)
        assert source.size == entry.original_size
        expected = source.resize((128, 128), Image.Resampling.LANCZOS, box=entry.crop_box, reducing_gap=3.0)
        assert np.array_equal(np.asarray(out), np.asarray(expected))
    assert report.entry("small.png").upscaled and report.entry("small.png").crop_box == (10, 0, 90, 80)
    rocket = report.entry("rocket.png")
    assert rocket.caption_source == "sidecar" and rocket.crop_method == "saliency"
    assert (dst / rocket.output).with_suffix(".txt").read_text() == "a rocket on its launch pad"
    cat = report.entry("cat (1).jpg")
    assert (cat.caption, cat.caption_source) == ("a photo of sks", "instance prompt")
    assert not (dst / cat.output).with_suffix(".txt").exists()  # instance-prompt captions are not frozen into files
    assert PrepareReport.from_json(dst / REPORT_NAME) == report  # JSON round trip
    assert report.images() == sorted(dst / e.output for e in report.entries)


def test_faces_and_crop_box_are_reported_in_source_coordinates(photos, tmp_path):
    face = FaceBox(500, 10, 620, 130, 0.8)  # near the right border of the 640x427 rocket
    report = prepare_instance_images(
        photos, tmp_path / "out", size=64, face_detector=lambda im: [face], detect_max_side=None
    )
    entry = report.entry("rocket.png")
    assert entry.crop_method == "faces" and entry.faces == [{**face.as_box(), "score": 0.8}]
    x0, y0, x1, y1 = entry.crop_box
    assert x1 - x0 == y1 - y0 == 427 and x0 <= 500 and x1 >= 620 and x1 <= 640


def test_rerun_is_idempotent_and_settings_changes_reprepare_under_the_same_names(photos, tmp_path, no_faces):
    dst = tmp_path / "out"
    first = prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dst.iterdir() if p.name != REPORT_NAME}
    second = prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    assert [e.status for e in second.entries] == ["skipped"] * 3
    assert [(e.output, e.crop_box) for e in second.entries] == [(e.output, e.crop_box) for e in first.entries]
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dst.iterdir() if p.name != REPORT_NAME}
    assert after.keys() == stamps.keys()
    assert all(after[k] == stamps[k] for k in stamps if k != MANIFEST_NAME)  # outputs untouched
    # a different size re-prepares everything, same names
    third = prepare_instance_images(photos, dst, size=72, face_detector=no_faces)
    assert [e.status for e in third.entries] == ["accepted"] * 3
    assert [e.output for e in third.entries] == [e.output for e in first.entries]
    assert Image.open(third.entries[0].output).size == (72, 72)
    # switching to JPEG replaces the PNGs instead of leaving both for the trainer to find
    fourth = prepare_instance_images(photos, dst, size=72, face_detector=no_faces, output_format="jpeg")
    assert sorted(p.suffix for p in dst.iterdir() if not p.name.startswith(".") and p.suffix != ".json") == [
        ".jpg",
        ".jpg",
        ".jpg",
        ".txt",
    ]
    assert Image.open(fourth.entries[0].output).format == "JPEG"


def test_duplicates_renames_caption_edits_and_prune(photos, tmp_path, no_faces):
    dst = tmp_path / "out"
    prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    shutil.copy(photos / "small.png", photos / "small copy.png")
    (photos / "rocket.png").rename(photos / "rocket renamed.png")
    (photos / "rocket.txt").rename(photos / "rocket renamed.txt")
    (photos / "rocket renamed.txt").write_text("an edited caption")
    report = prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    dup = report.entry("small.png")
    assert (dup.status, dup.duplicate_of) == ("duplicate", "small copy.png")  # first in name order is kept
    assert report.entry("small copy.png").status == "skipped"  # same bytes as an already prepared photo
    renamed = report.entry("rocket renamed.png")
    assert renamed.status == "skipped" and renamed.output.endswith(".png")  # output kept its name
    assert (dst / renamed.output).with_suffix(".txt").read_text() == "an edited caption"
    (photos / "rocket renamed.txt").unlink()
    (photos / "cat (1).jpg").unlink()
    report = prepare_instance_images(photos, dst, size=64, face_detector=no_faces, prune=True)
    assert not (dst / renamed.output).with_suffix(".txt").exists()  # caption gone with its sidecar
    assert len(report.removed) == 1 and "cat_1" in report.removed[0]
    assert sorted(p.name for p in dst.glob("*.png")) == sorted(
        e.output.rsplit("/", 1)[-1] for e in report.entries if e.output
    )


def test_upscaling_can_be_refused_and_crop_none_keeps_the_aspect_ratio(photos, tmp_path, no_faces):
    report = prepare_instance_images(photos, tmp_path / "a", size=96, face_detector=no_faces, allow_upscale=False)
    small = report.entry("small.png")
    assert (small.status, small.reason) == ("rejected", "too small")
    report = prepare_instance_images(photos, tmp_path / "b", size=256, crop="none")
    for entry in report.entries:
        w, h = Image.open(entry.output).size
        ow, oh = entry.original_size
        assert w % 8 == 0 and h % 8 == 0 and abs(w / h - ow / oh) / (ow / oh) < 0.03
        assert abs(w * h - 256 * 256) / (256 * 256) < 0.06
    assert report.entry("small.png").upscaled and not report.entry("rocket.png").upscaled


def test_outputs_carry_no_exif_or_gps(tmp_path, no_faces):
    src = tmp_path / "src"
    src.mkdir()
    exif = Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 30.0)}  # GPS latitude
    exif[0x010F] = "PhoneMaker"
    sample_image("coffee").save(src / "coffee.jpg", exif=exif.tobytes())
    assert Image.open(src / "coffee.jpg").getexif()
    report = prepare_instance_images(src, tmp_path / "out", size=64, face_detector=no_faces, output_format="jpeg")
    out = Image.open(report.entries[0].output)
    assert not out.getexif() and "exif" not in out.info


def test_bad_arguments_are_one_line_errors(photos, tmp_path):
    with pytest.raises(ValueError, match=r"size=500 must be a positive multiple of 8; try 496 or 504"):
        PrepareOptions(size=500)
    with pytest.raises(ValueError, match="crop='zoom'"):
        prepare_instance_images(photos, tmp_path / "o", crop="zoom")
    with pytest.raises(ValueError, match="jpeg_quality=80"):
        PrepareOptions(output_format="jpg", jpeg_quality=80)
    with pytest.raises(ValueError, match="is the source folder"):
        prepare_instance_images(photos, photos)
    with pytest.raises(FileNotFoundError, match="source folder not found"):
        prepare_instance_images(tmp_path / "nope", tmp_path / "o")


def test_manifest_damage_means_re_preparing_not_crashing(photos, tmp_path, no_faces):
    dst = tmp_path / "out"
    prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    (dst / MANIFEST_NAME).write_text("{not json")
    report = prepare_instance_images(photos, dst, size=64, face_detector=no_faces)
    assert [e.status for e in report.entries] == ["accepted"] * 3
    assert set(json.loads((dst / MANIFEST_NAME).read_text())["entries"]) == {e.sha256 for e in report.entries}


def test_a_detector_failing_on_one_photo_falls_back_to_saliency_and_says_so(photos, tmp_path):
    def flaky(image):
        raise RuntimeError("model exploded")

    report = prepare_instance_images(photos, tmp_path / "out", size=64, face_detector=flaky)
    assert [e.status for e in report.entries] == ["accepted"] * 3
    assert all(
        e.note == "face detection failed: model exploded" and e.crop_method in ("saliency", "center")
        for e in report.entries
    )
