"""The default embedders from the real Hub (openai/clip-vit-base-patch32, facebook/dino-vits16): they load through the
Auto classes with hfvision's weight policy and rank real photos sensibly. Needs the network: set
HFVISION_NETWORK_TESTS=1 to run (the suite is offline otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.network,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("HFVISION_NETWORK_TESTS") != "1", reason="set HFVISION_NETWORK_TESTS=1"),
]

_CODE = """
from hfvision.evaluation import ClipEmbedder, DinoEmbedder, cosine_matrix
from hfvision.testing import sample_image

cat, cat2, rocket = sample_image("chelsea"), sample_image("chelsea").rotate(8), sample_image("rocket")
clip, dino = ClipEmbedder.from_pretrained(), DinoEmbedder.from_pretrained()
texts = clip.embed_texts(["a photo of a cat", "a photo of a rocket"])
by_text = cosine_matrix(clip.embed_images([cat]), texts)[0]
assert by_text[0] > by_text[1], by_text
for embedder in (clip, dino):
    e = embedder.embed_images([cat, cat2, rocket])
    sim = cosine_matrix(e, e)
    assert sim[0, 1] > sim[0, 2], sim
print("ok", clip.embed_images([cat]).shape[-1], dino.embed_images([cat]).shape[-1])
"""


def test_default_embedders_from_the_hub(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HOME")}
    proc = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "512", "384"]
