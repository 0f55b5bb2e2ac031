"""Shared fixtures for the classification/feature pipeline tests: tiny models and pipelines built once per session."""

from __future__ import annotations

import pytest

IMAGES = ("astronaut", "chelsea", "coffee", "rocket")  # 512x512 RGB, 451x300, 400x600, 427x640


@pytest.fixture(scope="session")
def vit_dir(tiny_model_dir):
    return tiny_model_dir("vit")


@pytest.fixture(scope="session")
def timm_dir(tiny_model_dir):
    return tiny_model_dir("timm-resnet")


@pytest.fixture(scope="session")
def images():
    from hfvision.testing import sample_image

    return [sample_image(name) for name in IMAGES]


@pytest.fixture(scope="session")
def gender_pipe(vit_dir):
    import hfvision

    return hfvision.pipeline("gender-classification", model=vit_dir)


@pytest.fixture(scope="session")
def stock_vit(vit_dir):
    from transformers import ImageClassificationPipeline, pipeline

    pipe = pipeline("image-classification", model=str(vit_dir), device="cpu", dtype="float32")
    assert type(pipe) is ImageClassificationPipeline
    return pipe
