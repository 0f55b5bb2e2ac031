"""Shared, session-cached conversions of the tiny SD1 / SD2 (v) / SDXL pipelines."""

from __future__ import annotations

import functools

import pytest
from conversion_helpers import realign, single_thread


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test here (and the lazily built session models it uses) runs torch on one thread."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def single_file(tiny_model_dir, tmp_path_factory):
    """``single_file(family)`` -> the tiny pipeline of ``family`` written by ``to_single_file`` (cached)."""
    from hfvision.conversion import to_single_file

    @functools.cache
    def get(family: str):
        out = tmp_path_factory.mktemp(f"single-{family}") / f"{family}.safetensors"
        return to_single_file(tiny_model_dir(family), out, metadata={"trigger_word": "sks"})

    return get


@pytest.fixture(scope="session")
def reference_pipeline(tiny_model_dir):
    """``reference_pipeline(family)`` -> the tiny diffusers directory loaded by diffusers (cached, realigned)."""
    from diffusers import DiffusionPipeline

    return functools.cache(lambda family: realign(DiffusionPipeline.from_pretrained(tiny_model_dir(family))))


@pytest.fixture(scope="session")
def loaded_pipeline(single_file):
    """``loaded_pipeline(family)`` -> ``from_single_file`` of the cached single file (cached, realigned)."""
    from hfvision.conversion import from_single_file

    return functools.cache(lambda family: realign(from_single_file(single_file(family))))
