"""Fixtures for the image-classifier fine-tuning tests: generated imagefolders, a fast tiny timm model, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# One intra-op thread: on a busy 2-core machine this tiny-model training runs ~4x faster than with two threads.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def two_class_folder(tmp_path_factory) -> Path:
    """A generated imagefolder: female/ and male/, 20 images each, visually separable (read-only by convention)."""
    from hfvision.training.classification.synthetic import write_synthetic_imagefolder

    return write_synthetic_imagefolder(tmp_path_factory.mktemp("faces") / "data", per_class=20, size=48, seed=0)


@pytest.fixture(scope="session")
def grouped_folder(tmp_path_factory) -> Path:
    """Like ``two_class_folder`` plus a metadata.csv with a ``group`` column (groups young/old)."""
    from hfvision.training.classification.synthetic import write_synthetic_imagefolder

    root = tmp_path_factory.mktemp("faces-grouped") / "data"
    return write_synthetic_imagefolder(root, per_class=20, size=48, seed=1, groups=("young", "old"))


@pytest.fixture(scope="session")
def small_timm_dir(tmp_path_factory) -> Path:
    """The tiny timm ResNet with a 64-pixel ``pretrained_cfg`` (fast preprocessing), 10 classes."""
    from hfvision.testing import save_tiny_timm_resnet

    out = save_tiny_timm_resnet(tmp_path_factory.mktemp("timm-64"), num_classes=10)
    config = json.loads((out / "config.json").read_text())
    config["pretrained_cfg"].update(input_size=[3, 64, 64], test_input_size=[3, 64, 64], crop_pct=1.0)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


@pytest.fixture(scope="session")
def make_config():
    """``make_config(model, data, output_dir, **overrides)`` -> a fast :class:`ImageClassificationConfig`."""
    from hfvision.testing.classifiers import fast_classifier_config

    return fast_classifier_config


@pytest.fixture(scope="session")
def one_thread_env() -> dict[str, str]:
    """Environment for subprocesses: one intra-op thread (as ``_one_torch_thread`` in tests/conftest.py)."""
    return dict(ONE_THREAD_ENV)
