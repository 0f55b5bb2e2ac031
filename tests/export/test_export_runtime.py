"""ONNX Runtime pipelines: same class and output format as the PyTorch ones, same scores."""

from __future__ import annotations

import onnxruntime as ort
import pytest

import hfvision
from hfvision.export import OrtModelForImageClassification, load_ort_pipeline, select_providers


def assert_same_predictions(actual, expected, atol=1e-4):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if isinstance(e, list):
            assert_same_predictions(a, e, atol)
        elif "labels" in e:  # faces=True rows
            assert a["box"] == e["box"]
            assert_same_predictions(a["labels"], e["labels"], atol)
        else:
            assert a["label"] == e["label"] and abs(a["score"] - e["score"]) <= atol


def test_provider_selection_and_session_options(vit_export):
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert select_providers() == (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]
    )
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    if not has_cuda:
        with pytest.raises(ValueError, match="CUDAExecutionProvider.*not available.*available:"):
            select_providers("cuda")
    model = OrtModelForImageClassification.from_pretrained(
        vit_export.output_dir, provider="cpu", intra_op_num_threads=1
    )
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert model.session.get_providers() == ["CPUExecutionProvider"] and str(model.device) == "cpu"


def test_gender_pipeline_on_onnx_matches_torch(vit_export, tiny_model_dir, photos):
    torch_pipe = hfvision.pipeline("gender-classification", model=tiny_model_dir("vit"))
    ort_pipe = hfvision.pipeline("gender-classification", model=vit_export.output_dir)
    assert type(ort_pipe) is type(torch_pipe) and type(ort_pipe).__name__ == "GenderClassificationPipeline"
    assert isinstance(ort_pipe.model, OrtModelForImageClassification)
    assert_same_predictions(ort_pipe(photos), torch_pipe(photos))
    assert_same_predictions(ort_pipe(photos[0], faces=True), torch_pipe(photos[0], faces=True))  # one face
    # task omitted: taken from the export's report
    assert_same_predictions(load_ort_pipeline(None, vit_export.output_dir)(photos[1]), torch_pipe(photos[1]))
    # the server's two-halves path on ONNX Runtime: the same results as one batched call
    prepared = [ort_pipe.prepare(photo, top_k=1) for photo in photos]
    assert ort_pipe.run_prepared(prepared, top_k=1) == ort_pipe(photos, batch_size=len(photos), top_k=1)


def test_stock_transformers_pipeline_runs_on_the_ort_model(vit_export, tiny_model_dir, photos):
    from transformers import AutoImageProcessor, ImageClassificationPipeline, pipeline

    stock = pipeline("image-classification", model=str(tiny_model_dir("vit")), device="cpu", dtype="float32")
    ort_model = OrtModelForImageClassification.from_pretrained(vit_export.output_dir)
    ours = ImageClassificationPipeline(
        model=ort_model, device=-1, image_processor=AutoImageProcessor.from_pretrained(vit_export.output_dir)
    )
    assert_same_predictions(ours(photos), stock(photos))


def test_timm_image_classification_on_onnx_matches_torch(timm_export, tiny_model_dir, photos):
    torch_pipe = hfvision.pipeline("image-classification", model=tiny_model_dir("timm-resnet"))
    ort_pipe = hfvision.pipeline("image-classification", model=timm_export.output_dir)
    assert type(ort_pipe) is type(torch_pipe)
    assert_same_predictions(ort_pipe(photos, top_k=3), torch_pipe(photos, top_k=3))
    # the int8 model is a file choice away, and agrees on top-1 as its report says
    int8 = load_ort_pipeline("image-classification", timm_export.output_dir, file_name="model_quantized.onnx")
    quant = timm_export.report["quantization"]
    assert quant["mode"] == "static" and quant["written"] and quant["calibration_photos"]
    if quant["top1_agreement"] == 1.0:
        assert [r[0]["label"] for r in int8(photos, top_k=1)] == [r[0]["label"] for r in torch_pipe(photos, top_k=1)]


def test_feature_pyramid_on_onnx_matches_torch(pyramid_export, tiny_model_dir, photos):
    import numpy as np
    from transformers import pipeline

    from hfvision.export import OrtModelForFeaturePyramid

    torch_pipe = hfvision.pipeline("image-feature-pyramid", model=tiny_model_dir("timm-resnet"))
    ort_pipe = hfvision.pipeline("image-feature-pyramid", model=pyramid_export.output_dir)
    # transformers' own factory (after `import hfvision`) also detects the export: the task's model class
    stock_factory = pipeline("image-feature-pyramid", model=str(pyramid_export.output_dir), device="cpu")
    assert type(ort_pipe) is type(torch_pipe) is type(stock_factory)
    assert isinstance(stock_factory.model, OrtModelForFeaturePyramid)
    for kwargs in ({}, {"out_indices": (3, 1)}):
        expected, actual = torch_pipe(photos[0], **kwargs), ort_pipe(photos[0], **kwargs)
        assert [(a["index"], a["module"], a["channels"], a["stride"]) for a in actual] == [
            (e["index"], e["module"], e["channels"], e["stride"]) for e in expected
        ]
        for a, e, s in zip(actual, expected, stock_factory(photos[0], **kwargs)):
            np.testing.assert_allclose(a["feature_map"], e["feature_map"], atol=1e-4)
            np.testing.assert_array_equal(s["feature_map"], a["feature_map"])


def test_a_classifier_export_cannot_serve_another_task(vit_export, pyramid_export):
    from transformers import pipeline

    from hfvision.pipelines.loading import LoadRefusedError

    with pytest.raises(ValueError, match="exported for 'gender-classification'"):
        load_ort_pipeline("image-feature-pyramid", vit_export.output_dir)
    with pytest.raises(ValueError, match="has no ONNX Runtime pipeline"):
        load_ort_pipeline("object-detection", vit_export.output_dir)
    # through transformers' factory: refused, not answered by another model class
    with pytest.raises(LoadRefusedError, match="not a feature-pyramid export"):
        pipeline("image-feature-pyramid", model=str(vit_export.output_dir), device="cpu")
    with pytest.raises(LoadRefusedError, match="not a classifier export .* exported for 'image-feature-pyramid'"):
        pipeline("gender-classification", model=str(pyramid_export.output_dir), device="cpu")


def test_an_int8_only_export_loads_its_int8_model_by_every_call(vit_export, photos, tmp_path):
    import shutil

    from transformers import pipeline

    int8_only = tmp_path / "int8-only"
    shutil.copytree(vit_export.output_dir, int8_only, ignore=shutil.ignore_patterns("model.onnx"))
    expected = load_ort_pipeline(None, vit_export.output_dir, file_name="model_quantized.onnx")(photos)
    fp32 = load_ort_pipeline(None, vit_export.output_dir)(photos)
    assert expected != fp32  # the int8 scores are distinguishable from fp32's
    for pipe in (
        hfvision.pipeline(model=int8_only),
        pipeline("gender-classification", model=str(int8_only), device="cpu"),
        load_ort_pipeline(None, int8_only),
    ):
        assert pipe.model.path.name == "model_quantized.onnx"
        assert pipe(photos) == expected
