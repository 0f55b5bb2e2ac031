"""Tiny seeded CLIP and DINO embedders (in memory and saved as folders) for the evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def clip_embedder():
    from hfvision.evaluation import ClipEmbedder
    from hfvision.testing import tiny_clip_embedder

    return ClipEmbedder(*tiny_clip_embedder())


@pytest.fixture(scope="session")
def dino_embedder():
    from hfvision.evaluation import DinoEmbedder
    from hfvision.testing import tiny_dino_embedder

    return DinoEmbedder(*tiny_dino_embedder())


@pytest.fixture(scope="session")
def embedder_dirs(tmp_path_factory):
    """``(clip_dir, dino_dir)``: the tiny embedders saved as Hub-layout folders (safetensors)."""
    from hfvision.testing import save_tiny_clip_embedder, save_tiny_dino_embedder

    root = tmp_path_factory.mktemp("embedders")
    return save_tiny_clip_embedder(root / "clip"), save_tiny_dino_embedder(root / "dino")


@pytest.fixture(scope="session")
def checkpoints():
    """Three tiny SD1 pipelines with different seeded weights: stand-ins for three training checkpoints."""
    from hfvision.testing import tiny_sd_pipeline

    pipes = {}
    for step, seed in ((100, 0), (200, 1), (300, 2)):
        pipe = tiny_sd_pipeline("sd1", seed=seed)
        pipe.set_progress_bar_config(disable=True)
        pipes[step] = pipe
    return pipes


# Same launch as tests/ui/conftest.py (Debian's Chromium driven by Playwright; skipped with the reason if missing).
