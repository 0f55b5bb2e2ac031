"""Exports shared by the export tests, built once per session (each export is validated, which is the slow part)."""

from __future__ import annotations

import pytest

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="session")
def photos():
    from hfvision.testing import sample_image

    return [sample_image(name) for name in PHOTOS]


@pytest.fixture(scope="session")
def vit_export(tiny_model_dir, tmp_path_factory):
    """The tiny ViT gender classifier exported with int8 (dynamic) quantization."""
    from hfvision.export import export_onnx

    out = tmp_path_factory.mktemp("vit-onnx") / "export"
    return export_onnx(tiny_model_dir("vit"), out, task="gender-classification", quantize="int8")


@pytest.fixture(scope="session")
def timm_export(tiny_model_dir, tmp_path_factory):
    """The tiny timm ResNet exported with int8 (static, calibrated) quantization."""
    from hfvision.export import export_onnx

    out = tmp_path_factory.mktemp("timm-onnx") / "export"
    return export_onnx(tiny_model_dir("timm-resnet"), out, quantize="int8", force_quantize=True)


@pytest.fixture(scope="session")
def pyramid_export(tiny_model_dir, tmp_path_factory):
    from hfvision.export import export_onnx

    out = tmp_path_factory.mktemp("pyramid-onnx") / "export"
    return export_onnx(tiny_model_dir("timm-resnet"), out, task="image-feature-pyramid")
