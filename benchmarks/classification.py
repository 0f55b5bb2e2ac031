"""Image classification throughput: transformers' stock pipeline vs hfvision's vs the raw model forward.

Same images (32 sample photos at 224 x 224), same random weights, batch 32, CPU. Two models:

- a tiny ViT (hidden 32, 2 layers, 224 px): pipeline overhead dominates; target hfvision >= 2x the stock pipeline;
- a timm resnet18 (random weights, 1000 classes) through TimmWrapper: the forward dominates; target hfvision >=
  0.9x the raw ``model(pixel_values)`` forward under ``torch.inference_mode`` (pixel values prepared in advance).

The variants run interleaved (A, B, C, B, C, A, ...) and the best of ``--repeats`` runs is reported, so load from
other processes affects them alike and transient spikes are dropped. By default torch runs one thread and runs are
timed with the process CPU clock, which a busy shared machine distorts least; on an idle machine
``--threads 2 --clock wall`` gives wall-clock numbers comparable to the reference table in the docs.

    python benchmarks/classification.py [--repeats 7] [--images 32] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def _images(n: int, size: int = 224):
    from hfvision.testing import sample_image

    names = ("astronaut", "chelsea", "coffee", "rocket", "camera", "china", "flower")
    return [sample_image(names[i % len(names)]).resize((size, size)) for i in range(n)]


def _bench(calls: dict, repeats: int, n_images: int, clock=time.process_time) -> dict[str, dict[str, float]]:
    for fn in calls.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = clock()
            calls[name]()
            times[name].append(clock() - start)
    return {name: {"best": n_images / min(t), "median": n_images / statistics.median(t)} for name, t in times.items()}


def bench_model(name: str, model_dir: str, images: list, repeats: int, clock) -> dict:
    import torch
    from transformers import pipeline as hf_pipeline

    import hfvision

    stock = hf_pipeline("image-classification", model=model_dir, device="cpu", dtype=torch.float32)
    ours = hfvision.pipeline("image-classification", model=model_dir)
    model = stock.model.eval()
    pixel_values = stock.image_processor(images, return_tensors="pt")["pixel_values"]
    batch = len(images)

    # sanity: both pipelines give the same top label for every image
    top = lambda outputs: [o[0]["label"] for o in outputs]  # noqa: E731
    assert top(ours(images, batch_size=batch)) == top(stock(images, batch_size=batch)), "pipelines disagree"

    def raw_forward():
        with torch.inference_mode():
            model(pixel_values=pixel_values)

    def ours_preprocess_only():
        prep = ours.batch_preprocessor
        prep.normalize(torch.cat([prep.prepare(image) for image in images]))

    calls = {
        "stock pipeline": lambda: stock(images, batch_size=batch),
        "hfvision pipeline": lambda: ours(images, batch_size=batch),
        "raw forward": raw_forward,
        "hfvision preprocess": ours_preprocess_only,
    }
    result = _bench(calls, repeats, len(images), clock)
    result["model"] = name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--images", type=int, default=32, help="images per run (= batch size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall clock")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from hfvision.testing import save_tiny_timm_resnet, save_tiny_vit_classifier

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    images = _images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        vit = save_tiny_vit_classifier(f"{tmp}/vit", image_size=224)
        resnet = save_tiny_timm_resnet(f"{tmp}/resnet18", num_classes=1000, layers=(2, 2, 2, 2))
        results = [
            bench_model("tiny ViT (224 px)", str(vit), images, args.repeats, clock),
            bench_model("resnet18 (timm)", str(resnet), images, args.repeats, clock),
        ]

    print(
        f"\nimages/s ({args.clock} clock), batch {args.images}, 224 x 224, CPU, {torch.get_num_threads()} thread(s), "
        f"best of {args.repeats}"
    )
    print(f"{'model':<20}{'stock':>10}{'hfvision':>10}{'raw fwd':>10}{'hfv prep':>10}{'hfv/stock':>11}{'hfv/raw':>9}")
    for r in results:
        s, h, f, p = (
            r[k]["best"] for k in ("stock pipeline", "hfvision pipeline", "raw forward", "hfvision preprocess")
        )
        print(f"{r['model']:<20}{s:>10.0f}{h:>10.0f}{f:>10.0f}{p:>10.0f}{h / s:>10.2f}x{h / f:>8.2f}x")
    print("\nmedians:", {r["model"]: {k: round(v["median"]) for k, v in r.items() if k != "model"} for r in results})
    print("targets: hfvision >= 2x stock on the tiny ViT; hfvision >= 0.9x raw forward on resnet18")


if __name__ == "__main__":
    main()
