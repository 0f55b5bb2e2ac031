"""``--allow-pickle`` on ``serve``, ``ui`` and ``export onnx``: a model whose weights are a pickle is refused in one
line without the flag, and with it loads and predicts exactly what its safetensors original predicts."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from hfvision.cli.main import main


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """(the tiny ViT with model.safetensors, the same weights as pytorch_model.bin only)."""
    import torch
    from safetensors.torch import load_file

    vit = Path(tiny_model_dir("vit"))
    pickled = tmp_path_factory.mktemp("pickled") / "vit"
    shutil.copytree(vit, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(vit / "model.safetensors"), pickled / "pytorch_model.bin")
    return vit, pickled


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _reference(vit: Path, image) -> list[dict]:
    from hfvision import pipeline

    return pipeline("image-classification", model=str(vit))(image, top_k=2)


def _assert_same(predictions: list[dict], expected: list[dict]) -> None:
    assert [p["label"] for p in predictions] == [e["label"] for e in expected]
    np.testing.assert_allclose([p["score"] for p in predictions], [e["score"] for e in expected], rtol=1e-5)


def test_serve_refuses_a_pickle_in_one_line_and_allow_pickle_serves_it(models, monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    from hfvision.testing import sample_image

    vit, pickled = models
    argv = ["serve", "--task", "image-classification", "--model", str(pickled), "--port", "0"]
    assert main(argv) == 1
    line = _one_error_line(capsys)
    assert line.startswith("hfvision serve: error: --model") and "pickle" in line and "add --allow-pickle" in line

    image = sample_image("astronaut").resize((64, 64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    answers = []

    def serve(self, sockets=None):  # instead of serving forever: one request through the app the CLI built
        with TestClient(self.config.app) as client:
            answers.append(client.post("/", content=buffer.getvalue(), params={"top_k": 2}).json())

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    assert main([*argv, "--allow-pickle"]) == 0
    [answer] = answers
    _assert_same(answer, _reference(vit, image))


def test_ui_allow_pickle_loads_the_classifier(models, capsys):
    from hfvision.pipelines.loading import PickleRefusedError
    from hfvision.testing import sample_image
    from hfvision.ui.app import UIConfig, _classifier_loader
    from hfvision.ui.backend import ClassifyBackend

    vit, pickled = models
    assert main(["ui", "--classifier", str(pickled), "--port", "0"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("hfvision ui: error: --classifier") and "add --allow-pickle" in line

    refused = UIConfig(classifier=str(pickled), classifier_task="image-classification")
    with pytest.raises(PickleRefusedError, match="pickle"):
        ClassifyBackend(
            model=refused.classifier, task=refused.classifier_task, loader=_classifier_loader(refused)
        ).pipeline()
    allowed = UIConfig(classifier=str(pickled), classifier_task="image-classification", allow_pickle=True)
    backend = ClassifyBackend(
        model=allowed.classifier, task=allowed.classifier_task, loader=_classifier_loader(allowed)
    )
    image = sample_image("astronaut").resize((64, 64))
    _assert_same(backend.pipeline()(image, top_k=2), _reference(vit, image))


def test_export_onnx_refuses_a_pickle_source_unless_allow_pickle(models, tmp_path, capsys):
    from hfvision.export import export_onnx
    from hfvision.pipelines.loading import PickleRefusedError

    _, pickled = models
    out = tmp_path / "onnx"
    assert main(["export", "onnx", str(pickled), str(out)]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("hfvision export: error: MODEL") and "add --allow-pickle" in line and not out.exists()
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):  # the library keeps the rule too
        export_onnx(pickled, out)
    assert not out.exists()
    # with the flag the export runs and its validation (ONNX Runtime vs PyTorch on the pickled weights) passes
    assert main(["export", "onnx", str(pickled), str(out), "--allow-pickle"]) == 0
    assert "validation passed" in capsys.readouterr().out
    import json

    report = json.loads((out / "export_report.json").read_text())
    assert report["validation"]["passed"] and report["validation"]["max_abs_diff"] <= report["validation"]["atol"]
