"""Throughput and latency of ``hfvision serve`` with micro-batching on vs off (max_batch_size 1).

For the tiny ViT (hidden 32) and timm resnet18 (random weights, via TimmWrapper), the server runs in a separate
process (so clients and server do not share a GIL) with both variants of the app on two loopback ports sharing
one loaded pipeline; clients POST 224x224 (``--size``) JPEG photos (raw bytes, the HF Inference API form) at 1, 8 and 32
concurrent connections, alternating off/on runs several times and keeping the median (with hfvision.serving.loadgen, a keep-alive client costing ~0.1 ms
of CPU per request, so the load generator does not starve the server). Prints requests/s, p50/p99 latency and the
on/off ratio.

    python benchmarks/serving.py [--seconds 3] [--repeats 3] [--threads 1] [--models vit,resnet18]

Nothing is downloaded; everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing as mp
import os
import tempfile

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "china", "flower")


def build_model(name: str, out_dir: str) -> tuple[str, str]:
    from hfvision import testing

    if name == "vit":
        testing.save_tiny_vit_classifier(out_dir)
    elif name == "resnet18":
        testing.save_tiny_timm_resnet(out_dir, num_classes=1000, layers=(2, 2, 2, 2))  # resnet18's real layout
    else:
        raise ValueError(f"unknown model {name!r}; use vit or resnet18")
    return "image-classification", out_dir


def serve(model_dir: str, task: str, threads: int, max_wait_ms: float, urls, stop) -> None:
    """Child process: one pipeline, two apps (batching on / off) on free loopback ports."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import hfvision
    from hfvision.serving import BackgroundServer, ServeConfig, create_app

    torch.set_num_threads(threads)
    pipe = hfvision.pipeline(task, model=model_dir)
    servers = {}
    for label, batch in (("on", 32), ("off", 1)):
        config = ServeConfig(task=task, model="m", max_batch_size=batch, max_wait_ms=max_wait_ms, num_threads=threads)
        servers[label] = BackgroundServer(create_app(config, pipe=pipe)).start()
    urls.put({label: server.url for label, server in servers.items()})
    stop.wait()
    for server in servers.values():
        server.stop()


def measure(url: str, payloads: list[bytes], clients: int, seconds: float) -> dict:
    from hfvision.serving.loadgen import run_load

    asyncio.run(run_load(url, payloads, clients, seconds=1.0))  # warm-up (connections, first batches)
    result = asyncio.run(run_load(url, payloads, clients, seconds=seconds, content_type="image/jpeg"))
    return {
        "rps": result.throughput,
        "p50": result.percentile(50),
        "p99": result.percentile(99),
        "n": result.count,
        "errors": result.errors,
    }


def _rates(runs: list[dict]) -> str:
    return ", ".join(f"{r['rps']:.0f}" for r in runs)


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (its latencies come with it); errors summed over all runs."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return {**ordered[len(ordered) // 2], "errors": sum(r["errors"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating off/on runs per point (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in the server")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--models", default="vit,resnet18")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--size", type=int, default=224, help="side of the square JPEG request bodies")
    args = parser.parse_args()
    from hfvision.testing import sample_image

    payloads = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        sample_image(name).resize((args.size, args.size)).save(buffer, format="JPEG", quality=90)
        payloads.append(buffer.getvalue())
    levels = [int(c) for c in args.clients.split(",")]
    print(
        f"CPU cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}; server torch threads: "
        f"{args.threads}; max_wait_ms {args.max_wait_ms}; median of {args.repeats} x {args.seconds:g} s per point; "
        f"{args.size}x{args.size} JPEG bodies"
    )
    ctx = mp.get_context("spawn")
    rows = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            task, model_dir = build_model(model, tmp)
            urls, stop = ctx.Queue(), ctx.Event()
            child = ctx.Process(target=serve, args=(model_dir, task, args.threads, args.max_wait_ms, urls, stop))
            child.start()
            try:
                url = urls.get(timeout=600)
                for clients in levels:
                    # off/on measured alternately, `repeats` times: the median of each resists the drift of a shared
                    # machine's load better than one long measurement of each
                    runs = {"off": [], "on": []}
                    for _ in range(args.repeats):
                        for label in ("off", "on"):
                            runs[label].append(measure(url[label], payloads, clients, args.seconds))
                    off, on = (median_run(runs[label]) for label in ("off", "on"))
                    rows.append((model, clients, off, on))
                    print(
                        f"{model:>9} {clients:>3} clients | off {off['rps']:7.1f} req/s p50 {off['p50']:7.1f} ms "
                        f"p99 {off['p99']:7.1f} ms | on {on['rps']:7.1f} req/s p50 {on['p50']:7.1f} ms p99 "
                        f"{on['p99']:7.1f} ms | x{on['rps'] / off['rps']:.2f} (runs: off {_rates(runs['off'])}; "
                        f"on {_rates(runs['on'])}) | errors {off['errors'] + on['errors']}",
                        flush=True,
                    )
            finally:
                stop.set()
                child.join(60)
                if child.is_alive():
                    child.terminate()
    print("\nmodel     clients  batching-off req/s  batching-on req/s  ratio")
    for model, clients, off, on in rows:
        print(f"{model:<9} {clients:>7}  {off['rps']:>18.1f}  {on['rps']:>17.1f}  {on['rps'] / off['rps']:>5.2f}x")


if __name__ == "__main__":
    main()
