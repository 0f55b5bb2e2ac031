"""Fixtures for batch-inference tests: a tiny gender pipeline and a folder of good and bad image files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def vit_pipe(tiny_model_dir):
    import hfvision

    return hfvision.pipeline("gender-classification", model=tiny_model_dir("vit"))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """Seven files: five photos (one in a subfolder, one EXIF-rotated), an empty file and a text file named .jpg."""
    from PIL import Image

    from hfvision.testing import sample_image

    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    sample_image("astronaut").resize((128, 128)).save(root / "a_astronaut.jpg")
    sample_image("chelsea").resize((120, 80)).save(root / "b_chelsea.png")
    sample_image("coffee").resize((90, 60)).save(root / "sub" / "c_coffee.webp")
    exif = Image.Exif()
    exif[0x0112] = 8
    sample_image("rocket").resize((64, 96)).save(root / "d_rocket.jpg", exif=exif.tobytes())
    sample_image("camera").resize((100, 100)).save(root / "e_camera.bmp")
    (root / "f_empty.png").write_bytes(b"")
    (root / "g_notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root
