"""Fixtures for the server tests: tiny pipelines, encoded sample photos, a uvicorn server on 127.0.0.1."""

from __future__ import annotations

import io

import pytest

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "china", "flower")


def encode(image, fmt: str = "JPEG", size: int = 96) -> bytes:
    buffer = io.BytesIO()
    image.resize((size, size)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photo_bytes():
    """name -> JPEG bytes (96x96) of the sample photos; astronaut also as a 256x256 PNG ("astronaut-png")."""
    from hfvision.testing import sample_image

    photos = {name: encode(sample_image(name)) for name in PHOTOS}
    photos["astronaut-png"] = encode(sample_image("astronaut"), "PNG", 256)
    return photos


@pytest.fixture(scope="session")
def vit_pipe(tiny_model_dir):
    import hfvision

    return hfvision.pipeline("image-classification", model=str(tiny_model_dir("vit")))


@pytest.fixture
def serve():
    """``serve(app) -> BackgroundServer`` running on 127.0.0.1 (stopped at the end of the test)."""
    pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
    pytest.importorskip("uvicorn", reason="the [serve] extra (uvicorn) is not installed")
    from hfvision.serving import BackgroundServer

    servers = []

    def start(app, **kwargs):
        server = BackgroundServer(app, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def assert_same_labels():
    """``assert_same_labels(got, want)``: same labels in the same order and scores equal up to float32 rounding.

    A batched forward pass rounds differently from a batch of one (different GEMM blocking), so a ViT's scores
    can differ in the last bits (observed <= 5e-8); labels and their order must not.
    """

    def check(got, want, atol: float = 1e-6):
        assert [g["label"] for g in got] == [w["label"] for w in want], (got, want)
        for g, w in zip(got, want):
            assert abs(g["score"] - w["score"]) <= atol, (got, want)

    return check
