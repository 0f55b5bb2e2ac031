"""``hfvision export onnx``: prints the validation table and succeeds, or fails loudly with no success message."""

from __future__ import annotations

import json

from hfvision.cli.main import main


def test_cli_task_choices_match_the_library():
    from hfvision.cli.export import TASKS
    from hfvision.export.export import TASKS as LIBRARY_TASKS

    assert TASKS == LIBRARY_TASKS


def test_export_onnx_with_int8(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "export",
            "onnx",
            str(tiny_model_dir("vit")),
            str(out),
            "--task",
            "gender-classification",
            "--quantize",
            "int8",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "export_report.json").read_text())
    assert "max abs diff" in stdout and "images" in stdout and "validation passed" in stdout
    assert f"{report['validation']['max_abs_diff']:.2e}" in stdout
    assert "int8 (dynamic): top-1 agreement" in stdout and (out / "model_quantized.onnx").is_file()


def test_tolerance_exceeded_exits_non_zero_without_success_message(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "onnx", str(tiny_model_dir("vit")), str(out), "--atol", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "validation FAILED" in captured.err and "> atol 0" in captured.err
    assert "passed" not in captured.out and "Exported" not in captured.out
    assert not out.exists()


def test_non_empty_output_dir_exits_non_zero(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "x.txt").write_text("keep")
    assert main(["export", "onnx", str(tiny_model_dir("vit")), str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err and (tmp_path / "x.txt").read_text() == "keep"
