"""DreamBoothPipeline / DreamBoothXLPipeline vs diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline
latency on the same tiny components, and single-file conversion time.

The pipelines share every module and run interleaved (A, B, B, A, ...) on one torch thread, timed with the process
CPU clock so load from other processes on a shared machine does not distort them; the ratio of medians is the number
to read (target: <= 1.0). The DreamBooth pipelines run diffusers' own ``__call__`` after expanding ``{token}``, so the
only extra work is that expansion. Tiny random models measure pipeline overhead, not UNet speed: real checkpoints
spend >99% of the time in the UNet, which both pipelines call identically.

    python benchmarks/generation.py [--repeats 30] [--steps 10] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def bench_pipelines(repeats: int, steps: int, size: int, family: str = "sd1") -> dict:
    import torch

    from hfvision.pipelines.dreambooth import DreamBoothPipeline
    from hfvision.pipelines.dreambooth_xl import DreamBoothXLPipeline
    from hfvision.testing import tiny_sd_pipeline

    reference = tiny_sd_pipeline(family)
    cls = DreamBoothXLPipeline if family == "sdxl" else DreamBoothPipeline
    ours = cls.from_components(reference, instance_token="sks", class_noun="dog")
    runs = {"diffusers": [], "hfvision": []}

    def call(pipe, prompt):
        kwargs = dict(num_inference_steps=steps, height=size, width=size, output_type="np")
        return lambda: pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs)

    calls = {"diffusers": call(reference, "a photo of sks dog"), "hfvision": call(ours, "a photo of {token} {class}")}
    for pipe in (reference, ours):
        pipe.set_progress_bar_config(disable=True)
    for name in calls:  # warm-up
        calls[name]()
    order = ["diffusers", "hfvision"]
    for i in range(repeats):
        for name in order if i % 2 == 0 else order[::-1]:
            runs[name].append(_time(calls[name], time.process_time))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    return {"medians": medians, "ratio": medians["hfvision"] / medians["diffusers"]}


def bench_conversion(family: str) -> dict | None:
    try:
        from hfvision.conversion import from_single_file, to_single_file
    except ImportError:
        return None
    from hfvision.testing import save_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        src = save_tiny_sd(Path(tmp) / "pipe", family)
        out = Path(tmp) / "model.safetensors"
        to_seconds = _time(lambda: to_single_file(src, out))
        from_seconds = _time(lambda: from_single_file(out))
        return {"to_single_file": to_seconds, "from_single_file": from_seconds, "MB": out.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = {
        "sd1": ("StableDiffusionPipeline", "DreamBoothPipeline"),
        "sdxl": ("StableDiffusionXLPipeline", "DreamBoothXLPipeline"),
    }
    for family, (theirs, ours) in names.items():
        result = bench_pipelines(args.repeats, args.steps, args.size, family)
        m = result["medians"]
        print(
            f"generation, tiny {family}, {args.size}x{args.size}, {args.steps} steps, CPU time, median of "
            f"{args.repeats}:"
        )
        print(f"  diffusers {theirs:<26} {m['diffusers'] * 1000:8.1f} ms")
        print(f"  hfvision {ours:<27} {m['hfvision'] * 1000:8.1f} ms")
        print(f"  ratio hfvision/diffusers           {result['ratio']:8.3f}  (target <= 1.0)")
    for family in ("sd1", "sd2", "sdxl"):
        conv = bench_conversion(family)
        if conv is None:
            print("single-file conversion: hfvision.conversion not available")
            break
        print(
            f"single-file conversion, tiny {family} ({conv['MB']:.1f} MB): to_single_file "
            f"{conv['to_single_file']:.2f} s, from_single_file {conv['from_single_file']:.2f} s"
        )


if __name__ == "__main__":
    main()
