"""An ONNX export pushed to the (local) Hub and loaded back by repo id in a fresh process."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.hub

PUSH_AND_LOAD = """
import json, sys
import hfvision
from hfvision.export import push_onnx_to_hub
from hfvision.testing import sample_image

push_onnx_to_hub(sys.argv[1] if len(sys.argv) > 1 else {export!r}, "user/tiny-gender-onnx")
pipe = hfvision.pipeline("gender-classification", model="user/tiny-gender-onnx")
print(json.dumps({{"class": type(pipe).__name__, "model": type(pipe.model).__name__,
                  "scores": pipe([sample_image(n) for n in ("astronaut", "chelsea")])}}))
"""


def test_push_export_and_load_it_back_by_repo_id(vit_export, local_hub, run_python, photos):
    from hfvision.export import load_ort_pipeline

    out = json.loads(
        run_python(PUSH_AND_LOAD.format(export=str(vit_export.output_dir)), hub=local_hub).splitlines()[-1]
    )
    assert out["class"] == "GenderClassificationPipeline" and out["model"] == "OrtModelForImageClassification"
    local = load_ort_pipeline("gender-classification", vit_export.output_dir)(photos[:2])
    for remote_rows, local_rows in zip(out["scores"], local):
        assert [r["label"] for r in remote_rows] == [r["label"] for r in local_rows]
        assert all(abs(r["score"] - s["score"]) < 1e-6 for r, s in zip(remote_rows, local_rows))
