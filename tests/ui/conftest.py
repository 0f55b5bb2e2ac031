"""UI fixtures: the UI launched with tiny models on 127.0.0.1 (the `browser` fixture is in tests/conftest.py)."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_app(tiny_model_dir, tmp_path_factory):
    """The UI with the tiny SD1 pipeline (Generate) and the tiny ViT (Classify), on a free loopback port."""
    pytest.importorskip("gradio", reason="the [ui] extra (gradio) is not installed")
    from hfvision.ui import UIConfig, launch

    config = UIConfig(
        model=str(tiny_model_dir("sd1")),
        classifier=str(tiny_model_dir("vit")),
        port=free_port(),
        steps=2,
        size=64,
        output_dir=str(tmp_path_factory.mktemp("ui-out")),
        controlnet=str(tiny_model_dir("controlnet-sd1")),
    )
    demo = launch(config)
    yield demo, config
    demo.close()


@pytest.fixture(scope="session")
def reference_images():
    """``reference_images(pipe, prompt, seed, **kwargs)`` -> the images a diffusers pipeline makes with the UI
    settings of these tests (2 steps at 64x64 px, a CPU generator seeded ``seed``): what the UI must reproduce."""
    import torch

    def make(pipe, prompt: str, seed: int, **kwargs):
        generator = torch.Generator().manual_seed(seed)
        return pipe(prompt, num_inference_steps=2, width=64, height=64, generator=generator, **kwargs).images

    return make
