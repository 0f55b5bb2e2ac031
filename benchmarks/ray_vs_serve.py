"""Ray Serve (``hfvision serve --backend ray``) vs ``hfvision serve`` (uvicorn) on the same model and load.

Both serve the same saved model with the same batching settings (max batch 32, 5 ms wait, 1 torch thread): hfvision
serve in a child process, Ray Serve as one replica on a local Ray instance (``--num-cpus``, default 2). 32 keep-alive
clients (hfvision.serving.loadgen) POST 224x224 JPEG photos; the runs alternate (``--repeats``) and the median run of
each backend is kept. Prints requests/s, p50/p99 latency and the ray/serve ratios.

    python benchmarks/ray_vs_serve.py [--model vit|resnet18] [--seconds 5] [--repeats 2] [--clients 32]

Needs hfvision[serve,ray]. Nothing is downloaded; everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import socket
import tempfile

from serving import PHOTOS, build_model, measure, median_run  # benchmarks/serving.py: same photos, models, load


def jpeg(image, size: int) -> bytes:
    buffer = io.BytesIO()
    image.resize((size, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def serve_child(model_dir: str, task: str, urls, stop) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hfvision.serving import BackgroundServer, ServeConfig, create_app

    config = ServeConfig(task=task, model=model_dir, name="m", max_batch_size=32, max_wait_ms=5, num_threads=1)
    server = BackgroundServer(create_app(config)).start()
    urls.put(server.url)
    stop.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit", choices=("vit", "resnet18"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--size", type=int, default=224, help="side of the JPEG photos sent")
    args = parser.parse_args()

    import ray

    from hfvision.serving import ServeConfig
    from hfvision.serving.ray_serve import RayServeOptions, start_ray, stop_ray
    from hfvision.testing import sample_image

    payloads = [jpeg(sample_image(name), args.size) for name in PHOTOS]
    with tempfile.TemporaryDirectory() as tmp:
        task, model_dir = build_model(args.model, tmp)
        ctx = mp.get_context("spawn")
        urls, stop = ctx.Queue(), ctx.Event()
        child = ctx.Process(target=serve_child, args=(model_dir, task, urls, stop))
        child.start()
        serve_url = urls.get(timeout=300) + "/models/m"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
        config = ServeConfig(
            task=task, model=model_dir, name="m", port=port, max_batch_size=32, max_wait_ms=5, num_threads=1
        )
        start_ray(config, RayServeOptions(replicas=1))
        ray_url = f"http://127.0.0.1:{port}/models/m"
        runs: dict[str, list[dict]] = {"serve": [], "ray": []}
        try:
            for _ in range(args.repeats):
                runs["serve"].append(measure(serve_url, payloads, args.clients, args.seconds))
                runs["ray"].append(measure(ray_url, payloads, args.clients, args.seconds))
        finally:
            stop.set()
            child.join(60)
            stop_ray()
            ray.shutdown()
    a, b = median_run(runs["serve"]), median_run(runs["ray"])
    print(
        f"{args.model}, {args.clients} clients, {args.size}px JPEG, batch <= 32, 1 torch thread, "
        f"{args.repeats} x {args.seconds:g} s each (median run)"
    )
    print(f"{'backend':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in (("hfvision serve", a), ("ray serve", b)):
        print(f"{name:<16}{r['rps']:>9.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['errors']:>8}")
    print(f"ray/serve: throughput {b['rps'] / a['rps']:.2f}x, p99 {b['p99'] / a['p99']:.2f}x")


if __name__ == "__main__":
    main()
