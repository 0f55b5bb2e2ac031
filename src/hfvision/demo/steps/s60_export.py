"""ONNX export of the tiny ViT gender classifier and a tiny timm ResNet: validation table, int8, ORT == torch."""

from __future__ import annotations

import time

ORDER = 60
TITLE = "ONNX export: strict validation, int8, ONNX Runtime pipelines"


def run(ctx) -> None:
    import hfvision
    from hfvision import testing as t
    from hfvision.export import export_onnx

    sec = ctx.section
    vit_dir = ctx.model_dir("vit (gender)", lambda d: t.save_tiny_vit_classifier(d))
    timm_dir = ctx.model_dir("timm resnet", lambda d: t.save_tiny_timm_resnet(d))

    rows, quant_rows = [], []
    exports = {}
    # int8 for the ViT only (dynamic, quick); the ResNet's calibrated int8 is in benchmarks/onnx.py
    for name, src, task, quantize in (
        ("tiny ViT", vit_dir, "gender-classification", "int8"),
        ("tiny timm ResNet", timm_dir, "image-classification", None),
    ):
        start = time.perf_counter()
        result = export_onnx(
            src,
            ctx.work_dir / "onnx" / name.replace(" ", "-"),
            task=task,
            quantize=quantize,
            force_quantize=True,
            overwrite=True,
        )
        exports[name] = result
        for row in result.validation.rows():
            row["model"] = name
            rows.append(row)
        q = result.report.get("quantization")
        timing = {"model": name, "export+validate(+int8) s": round(time.perf_counter() - start, 1)}
        if q is None:
            quant_rows.append({**timing, "int8 mode": "-"})
            continue
        quant_rows.append(
            {
                **timing,
                "int8 mode": q["mode"],
                "top-1 int8 = fp32": f"{q['top1_agreement']:.0%} of {q['images']}",
                "int8 speed vs fp32 (ORT)": f"{q['speedup']:.2f}x",
                "MB fp32 -> int8": f"{q['fp32_bytes'] / 1e6:.2f} -> {q['int8_bytes'] / 1e6:.2f}",
            }
        )
    sec.text(
        "Each export is compared with PyTorch on Optimum's dummy inputs and on bundled photos (through the "
        "model's own preprocessing), at batch sizes 1 and 3; the ResNet also at a second resolution (the ViT "
        "takes one size, as in PyTorch). Any difference above atol fails the export and nothing is written."
    )
    sec.table(rows, "Validation: ONNX Runtime vs PyTorch, per case and output")
    sec.table(quant_rows, "Timing and int8 quantization (random weights: agreement is a pessimistic stand-in)")

    photo = t.sample_image("astronaut")
    path = ctx.path("export/astronaut.png")
    photo.resize((256, 256)).save(path)
    sec.image(path, "astronaut (bundled photo)")
    torch_pipe = hfvision.pipeline("gender-classification", model=vit_dir)
    ort_pipe = hfvision.pipeline("gender-classification", model=exports["tiny ViT"].output_dir)
    expected, actual = torch_pipe(photo), ort_pipe(photo)
    table = [
        {
            "backend": "PyTorch",
            "pipeline": type(torch_pipe).__name__,
            **{r["label"]: f"{r['score']:.6f}" for r in expected},
        },
        {
            "backend": "ONNX Runtime",
            "pipeline": type(ort_pipe).__name__,
            **{r["label"]: f"{r['score']:.6f}" for r in actual},
        },
    ]
    sec.table(table, "hfvision.pipeline('gender-classification') on the PyTorch folder and on the ONNX export")
    diff = max(abs(a["score"] - e["score"]) for a, e in zip(actual, expected))
    same = [a["label"] for a in actual] == [e["label"] for e in expected] and diff <= 1e-4
    sec.text(f"Same labels in the same order, max score difference {diff:.1e}: {'equal' if same else 'DIFFERENT'}.")
    if not same:
        raise RuntimeError(f"ONNX Runtime classification differs from PyTorch (max score diff {diff:.1e})")
