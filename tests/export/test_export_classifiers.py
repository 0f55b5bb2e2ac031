"""Classifier and feature-pyramid exports: layout, report, and ONNX Runtime == PyTorch on real photos."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import torch

from hfvision.export import OrtModelForImageClassification, export_onnx
from hfvision.utils import sha256_file


def _json(path):
    return json.loads(path.read_text())


def test_vit_export_layout_report_and_round_trip(vit_export, tiny_model_dir):
    src, out = tiny_model_dir("vit"), vit_export.output_dir
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "export_report.json",
        "model.onnx",
        "model_quantized.onnx",
        "preprocessor_config.json",
    ]
    report = _json(out / "export_report.json")
    assert report["task"] == "gender-classification" and report["opset"] == 17
    [onnx_file] = report["components"]["model"]["files"]
    assert onnx_file["sha256"] == sha256_file(out / "model.onnx")
    validation = report["validation"]
    assert validation["passed"] and validation["max_abs_diff"] <= validation["atol"] == 1e-4
    # dynamic size (interpolated position embeddings): 2 sizes x 2 batch sizes x (dummy, photos), each checked
    assert sorted((c["inputs"], c["batch_size"], tuple(c["size"])) for c in validation["cases"]) == sorted(
        (kind, batch, size) for kind in ("dummy", "images") for batch in (1, 3) for size in ((64, 64), (48, 48))
    )
    assert all(c["passed"] and c["top1_agreement"] == 1.0 for c in validation["cases"])
    # config and preprocessing travel with the model: same labels, same processor settings
    assert _json(out / "config.json")["id2label"] == _json(src / "config.json")["id2label"]
    drop = {"transformers_version"}
    strip = lambda d: {k: v for k, v in d.items() if k not in drop}  # noqa: E731
    assert strip(_json(out / "preprocessor_config.json")) == strip(_json(src / "preprocessor_config.json"))


def test_vit_onnx_logits_equal_torch_on_photos(vit_export, tiny_model_dir, photos):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    src = tiny_model_dir("vit")
    model = AutoModelForImageClassification.from_pretrained(src).eval()
    pixels = AutoImageProcessor.from_pretrained(src)(images=photos, return_tensors="pt")["pixel_values"]
    ort_model = OrtModelForImageClassification.from_pretrained(vit_export.output_dir)
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits
    actual = ort_model(pixel_values=pixels).logits
    assert actual.shape == expected.shape == (len(photos), 2)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert ort_model.config.id2label == model.config.id2label


def test_vit_export_runs_at_sizes_never_seen_at_export(vit_export, tiny_model_dir):
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tiny_model_dir("vit")).eval()
    session = ort.InferenceSession(str(vit_export.output_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    for height, width in ((96, 32), (128, 128)):  # non-square, and larger than the 64x64 training size
        x = torch.rand(2, 3, height, width)
        with torch.no_grad():
            expected = model(pixel_values=x, interpolate_pos_encoding=True).logits.numpy()
        np.testing.assert_allclose(session.run(None, {"pixel_values": x.numpy()})[0], expected, atol=1e-5)


def test_int8_keeps_the_classifier_head_in_fp32(vit_export, timm_export):
    import onnx

    for export, head in ((vit_export, "/model/classifier/Gemm"), (timm_export, "/model/fc/Gemm")):
        quant = export.report["quantization"]
        assert quant["kept_fp32"] == [head]
        graph = onnx.load(str(export.output_dir / "model_quantized.onnx")).graph
        # the dynamic quantizer rewrites Gemm as MatMul + Add; either way the head's weights stay float
        [node] = [n for n in graph.node if n.name in (head, f"{head}_MatMul")]
        weights = {t.name: t for t in graph.initializer}
        assert node.op_type in ("Gemm", "MatMul") and weights[node.input[1]].data_type == onnx.TensorProto.FLOAT
        # and the rest is int8: integer ops carry the body
        assert sum(n.op_type in ("QLinearConv", "MatMulInteger", "QLinearMatMul") for n in graph.node) >= 2


def test_timm_export_has_dynamic_size_beyond_the_validated_ones(timm_export, tiny_model_dir, photos):
    import timm

    out = timm_export.output_dir
    validation = _json(out / "export_report.json")["validation"]
    assert {tuple(c["size"]) for c in validation["cases"]} == {(224, 224), (160, 160)}
    assert {(c["inputs"], c["batch_size"]) for c in validation["cases"]} == {
        ("dummy", 1),
        ("dummy", 3),
        ("images", 1),
        ("images", 3),
    }
    # timm's own loader on the source weights vs ONNX Runtime at the test size (288), never seen at export
    model = timm.create_model(f"local-dir:{tiny_model_dir('timm-resnet')}", pretrained=True).eval()
    x = torch.rand(2, 3, 288, 288)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"pixel_values": x.numpy()})[0], model(x).numpy(), atol=1e-4)
    # config.json is timm's (loadable by TimmWrapper: preprocessing comes from its pretrained_cfg)
    assert _json(out / "config.json") == _json(tiny_model_dir("timm-resnet") / "config.json")


def test_feature_pyramid_export_matches_timm_features_only(pyramid_export, tiny_model_dir):
    import timm

    out = pyramid_export.output_dir
    model = timm.create_model(f"local-dir:{tiny_model_dir('timm-resnet')}", pretrained=True, features_only=True)
    model.eval()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [f"feature_maps.{i}" for i in range(5)]
    x = torch.rand(1, 3, 192, 160)
    with torch.no_grad():
        expected = model(x)
    actual = session.run(None, {"pixel_values": x.numpy()})
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e.numpy(), atol=1e-4)
    info = _json(out / "config.json")["onnx_export"]["feature_info"]
    assert [(i["num_chs"], i["reduction"], i["module"]) for i in info] == [
        (d["num_chs"], d["reduction"], d["module"]) for d in model.feature_info.get_dicts()
    ]
    assert pyramid_export.validation.passed and len(pyramid_export.validation.cases) == 8


def test_static_shapes_and_external_data(tiny_model_dir, tmp_path, photos):
    out = tmp_path / "static"
    result = export_onnx(tiny_model_dir("vit"), out, dynamic_axes=False, external_data_threshold=0)
    assert sorted(p.name for p in out.glob("model.onnx*")) == ["model.onnx", "model.onnx_data"]
    assert (out / "model.onnx").stat().st_size < (out / "model.onnx_data").stat().st_size
    files = result.report["components"]["model"]["files"]
    assert [f["path"] for f in files] == ["model.onnx", "model.onnx_data"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    assert result.validation.passed and {c.batch_size for c in result.validation.cases} == {1}
    assert any("static" in note for note in result.validation.notes)
