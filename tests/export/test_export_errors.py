"""Bad input gives clear errors and never a half-written (or falsely validated) export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hfvision.export import (
    OpsetError,
    QuantizationRefusedError,
    UnsupportedModelError,
    ValidationFailedError,
    export_onnx,
    quantize_onnx,
)


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    from transformers import SwinConfig, SwinForImageClassification

    model = SwinForImageClassification(SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1], num_heads=[1]))
    with pytest.raises(UnsupportedModelError) as err:
        export_onnx(model, tmp_path / "out")
    message = str(err.value)
    assert (
        "'swin'" in message
        and "vit" in message
        and "timm" in message
        and "Stable Diffusion" in message
        and "deit" in message
    )
    assert not (tmp_path / "out").exists()


def test_opset_outside_what_the_ops_or_torch_support(tiny_model_dir, tmp_path):
    with pytest.raises(OpsetError, match=r"opset=13 is too low .* need opset >= 14"):
        export_onnx(tiny_model_dir("vit"), tmp_path / "out", opset=13)
    with pytest.raises(OpsetError, match=r"opset=30 is above 20"):
        export_onnx(tiny_model_dir("vit"), tmp_path / "out", opset=30)
    assert not (tmp_path / "out").exists()


def test_non_empty_output_dir_is_refused_unless_overwrite(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty.*overwrite"):
        export_onnx(tiny_model_dir("vit"), out, validate=False)
    assert (out / "keep.txt").read_text() == "user data"
    result = export_onnx(tiny_model_dir("vit"), out, validate=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "export_report.json",
        "model.onnx",
        "preprocessor_config.json",
    ]
    assert result.report["validation"] == {"passed": None, "skipped": True}


class _BatchDependentViT:
    """A ViT whose eager output depends on the batch size in a way tracing freezes (a real export hazard)."""

    @staticmethod
    def build():
        from transformers import ViTForImageClassification

        from hfvision.testing import tiny_vit_classifier

        class BatchDependent(ViTForImageClassification):
            def forward(self, pixel_values=None, **kwargs):
                out = super().forward(pixel_values=pixel_values, **kwargs)
                if pixel_values.shape[0] > 2:  # traced with batch 2: the ONNX graph never takes this branch
                    out.logits = out.logits * 2.0
                return out

        model, processor = tiny_vit_classifier()
        twin = BatchDependent(model.config).eval()
        twin.load_state_dict(model.state_dict())
        return twin, processor


def test_output_mismatch_fails_and_writes_nothing(tmp_path):
    model, processor = _BatchDependentViT.build()
    with pytest.raises(ValidationFailedError) as err:
        export_onnx(model, tmp_path / "out", processor=processor)
    message = str(err.value)
    assert "FAILED" in message and "nothing was written" in message and "max abs diff" in message
    report = err.value.report
    assert not report.passed
    assert {c.batch_size for c in report.cases if not c.passed} == {3}  # batch 1 matches, batch 3 does not
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no half-written dirs


def test_source_and_task_errors(tiny_model_dir, vit_export, tmp_path):
    with pytest.raises(ValueError, match="task='segmentation' is not supported"):
        export_onnx(tiny_model_dir("vit"), tmp_path / "a", task="segmentation")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        export_onnx(tmp_path / "missing" / "model", tmp_path / "b")
    with pytest.raises(ValueError, match="already holds an ONNX export"):
        export_onnx(vit_export.output_dir, tmp_path / "c")
    with pytest.raises(UnsupportedModelError, match="needs a timm model"):
        export_onnx(tiny_model_dir("vit"), tmp_path / "d", task="image-feature-pyramid")
    with pytest.raises(ValueError, match="needs a diffusers pipeline"):
        export_onnx(tiny_model_dir("vit"), tmp_path / "e", task="text-to-image")


def test_int8_below_threshold_is_refused_unless_forced(vit_export, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(vit_export.output_dir, export)
    (export / "model_quantized.onnx").unlink()
    with pytest.raises(QuantizationRefusedError, match=r"NOT written: top-1 agreement .* below the threshold 101%"):
        quantize_onnx(export, threshold=1.01)
    assert not (export / "model_quantized.onnx").exists() and (export / "model.onnx").exists()
    quant = json.loads((export / "export_report.json").read_text())["quantization"]
    assert quant["written"] is False and quant["top1_agreement"] <= 1.0
    forced = quantize_onnx(export, threshold=1.01, force=True)
    assert forced["forced"] and forced["written"] and (export / "model_quantized.onnx").is_file()


def test_quantization_needs_a_classifier(pyramid_export):
    with pytest.raises(ValueError, match="no logits output"):
        quantize_onnx(pyramid_export.output_dir)


def test_unknown_torch_module_is_rejected(tmp_path):
    with pytest.raises(UnsupportedModelError, match="Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "out")


def test_classifier_head_lookup(tmp_path, caplog):
    import onnx
    from onnx import TensorProto, helper

    from hfvision.export.quantize import classifier_head_nodes

    def model(name, last):
        weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], [0.0] * 8)
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["mm"], name=name),
            helper.make_node(last, ["mm", "b"], ["logits"]),
        ]
        graph = helper.make_graph(
            nodes,
            "g",
            [
                helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2]),
            ],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
            [weight],
        )
        path = tmp_path / f"{name or 'unnamed'}-{last}.onnx"
        onnx.save(helper.make_model(graph), str(path))
        return path

    assert classifier_head_nodes(model("head", "Add")) == ["head"]  # through the bias Add to the MatMul
    for name, last in (("head", "Div"), ("", "Add")):  # an op not walked through; an unnamed head
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert classifier_head_nodes(model(name, last)) == []
        assert "classifier head is quantized too" in caplog.text


def test_stray_file_cleanup_removes_only_the_dump_it_caused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from hfvision.export.quantize import _no_stray_files

    unrelated = tmp_path / "12345678-1234-1234-1234-123456789abc.data"
    unrelated.write_bytes(b"user data")
    with _no_stray_files(tmp_path):
        # what ORT's symbolic shape inference does on failure: a model dump with external data next to it
        tensor = numpy_helper.from_array(np.zeros((64, 64), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Identity", ["w"], ["y"])],
            "g",
            [],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
            [tensor],
        )
        onnx.save_model(
            helper.make_model(graph),
            str(tmp_path / "sym_shape_infer_temp.onnx"),
            save_as_external_data=True,
            location="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.data",
            size_threshold=0,
        )
        assert (tmp_path / "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]
    assert unrelated.read_bytes() == b"user data"
