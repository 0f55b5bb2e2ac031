"""Torch eager vs ONNX Runtime fp32 vs ONNX Runtime int8: images/s on resnet18 and a ViT-base-shaped model.

Both models have real architectures and random weights (no download): timm ``resnet18`` and transformers
``ViTConfig()`` (ViT-base/16, 224). Each is exported with ``hfvision.export.export_onnx`` (strictly validated)
and quantized with the family's int8 mode (static/calibrated for the CNN, dynamic for the transformer); the
top-1 agreement is int8 vs fp32 on 40 held-out bundled photo views, as in the export report. A second table
puts the speeds in GFLOP/s against what a large torch matmul reaches on the same CPU in the same rounds.

    python benchmarks/onnx.py [--batch-size 16] [--runs 5] [--threads 2]

Targets from the issue: ORT fp32 >= 2x torch, int8 >= 3x torch with >= 99% top-1 agreement. Random weights make
the top two logits of an image close together (the report's ``fp32_median_top2_margin``, printed below next to
int8's largest logit error), so the agreement is a pessimistic stand-in for trained weights.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path


def seconds_per_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(fns: dict, runs: int) -> dict:
    """Median seconds per call of each variant, measured in interleaved rounds (load that comes and goes hits
    every variant alike)."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(seconds_per_call(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def matmul(size: int = 2048):
    """A large square fp32 matmul: the best case for torch's GEMM kernels on this CPU (a reference rate)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    return (lambda: torch.mm(a, b)), 2 * size**3


def forward_gflop(call, batch) -> float:
    """GFLOP of one forward per image (torch's FlopCounterMode; matmuls and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        call(batch[:1])
    return counter.get_total_flops() / 1e9


def bench(name: str, model, processor, work: Path, batch_size: int, runs: int, threads: int) -> dict:
    import onnxruntime as ort
    import torch

    from hfvision.export import export_onnx
    from hfvision.export.quantize import EVAL_PHOTOS, _pixel_values, photo_views

    out = work / name
    start = time.perf_counter()
    result = export_onnx(model, out, processor=processor, quantize="int8", force_quantize=True)
    export_seconds = time.perf_counter() - start
    quant = result.report["quantization"]
    pixels = _pixel_values(processor, photo_views(EVAL_PHOTOS))
    batch = torch.from_numpy(pixels[:batch_size].repeat(-(-batch_size // len(pixels)), axis=0)[:batch_size])

    torch.set_num_threads(threads)
    call = (lambda x: model(x)) if "timm" in type(model).__module__ else (lambda x: model(pixel_values=x).logits)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    feed = {"pixel_values": batch.numpy()}
    sessions = {
        label: ort.InferenceSession(str(out / file), options, providers=["CPUExecutionProvider"])
        for label, file in (("fp32", "model.onnx"), ("int8", "model_quantized.onnx"))
    }

    def torch_forward():
        with torch.inference_mode():
            call(batch)

    peak_fn, peak_flop = matmul()
    seconds = interleaved_medians(
        {"torch": torch_forward, "peak": peak_fn, **{k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}},
        runs,
    )
    speeds = {k: batch_size / v for k, v in seconds.items()}
    return {
        "model": name,
        "torch": speeds["torch"],
        "ort_fp32": speeds["fp32"],
        "ort_int8": speeds["int8"],
        "gflop": forward_gflop(call, batch),
        "peak_gflops": peak_flop / seconds["peak"] / 1e9,
        "int8_mode": quant["mode"],
        "top1_int8_vs_fp32": quant["top1_agreement"],
        "agreement_images": quant["images"],
        "validation_max_abs_diff": result.validation.max_abs_diff,
        "int8_max_logit_diff": quant["max_abs_logit_diff"],
        "fp32_margin": quant["fp32_median_top2_margin"],
        "export_s": export_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)

    import timm
    import torch
    from transformers import TimmWrapperImageProcessor, ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    resnet = timm.create_model("resnet18", pretrained=False).eval()
    vit = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    models = [
        ("resnet18 (timm)", resnet, TimmWrapperImageProcessor(pretrained_cfg=dict(resnet.pretrained_cfg))),
        ("vit-base/16 (transformers)", vit, ViTImageProcessor()),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hfvision-bench-onnx-") as work:
        for name, model, processor in models:
            rows.append(bench(name.split()[0], model, processor, Path(work), args.batch_size, args.runs, args.threads))
    print(
        f"\nimages/s, batch {args.batch_size}, {args.threads} threads, median of {args.runs} interleaved runs "
        "(random weights)"
    )
    header = f"{'model':<14}{'torch':>9}{'ORT fp32':>10}{'ORT int8':>10}{'fp32/torch':>12}{'int8/torch':>12}"
    print(header + f"{'int8 mode':>11}{'top-1 int8=fp32':>17}{'max |diff|':>12}")
    for r in rows:
        print(
            f"{r['model']:<14}{r['torch']:>9.1f}{r['ort_fp32']:>10.1f}{r['ort_int8']:>10.1f}"
            f"{r['ort_fp32'] / r['torch']:>11.2f}x{r['ort_int8'] / r['torch']:>11.2f}x{r['int8_mode']:>11}"
            f"{r['top1_int8_vs_fp32']:>9.1%} of {r['agreement_images']:<3}{r['validation_max_abs_diff']:>12.1e}"
        )
    for r in rows:
        print(
            f"{r['model']:<14}int8 max |logit - fp32 logit| {r['int8_max_logit_diff']:.3f}; fp32 median top-2 "
            f"margin {r['fp32_margin']:.3f}"
        )
    print(
        "\nfp32 GFLOP/s vs a 2048x2048 torch matmul (GEMM reference), measured in the same rounds; 2x torch would "
        "need ORT at twice torch's share:"
    )
    for r in rows:
        peak, torch_rate, ort_rate = r["peak_gflops"], r["torch"] * r["gflop"], r["ort_fp32"] * r["gflop"]
        print(
            f"{r['model']:<14}{r['gflop']:.2f} GFLOP/image, matmul {peak:.0f}: torch {torch_rate:.0f} "
            f"({torch_rate / peak:.0%}), ORT fp32 {ort_rate:.0f} ({ort_rate / peak:.0%}); 2x torch = "
            f"{2 * torch_rate / peak:.0%} of the matmul"
        )
    print("targets: fp32 >= 2x torch, int8 >= 3x torch with >= 99% top-1 agreement")


if __name__ == "__main__":
    import os
    import sys

    # this file is named onnx.py: drop its folder from sys.path so `import onnx` finds the real package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    main()
