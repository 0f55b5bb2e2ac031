"""Serving: the HF-Inference-API-compatible server with micro-batching, and a screenshot of the web UI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import time

ORDER = 70
TITLE = "Serving: HF Inference API-compatible server with micro-batching; web UI"


@contextlib.contextmanager
def _loopback_client_allowed():
    """``InferenceClient`` refuses every request when HF_HUB_OFFLINE is set; it only talks to 127.0.0.1 here."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _throughput(pipe, payloads) -> list[dict]:
    from ...serving import BackgroundServer, ServeConfig, create_app
    from ...serving.loadgen import run_load

    rows = []
    for label, batch in (("off (max_batch_size 1)", 1), ("on (max_batch_size 32)", 32)):
        config = ServeConfig(task="image-classification", model="vit", max_batch_size=batch, num_threads=1)
        app = create_app(config, pipe=pipe)
        with BackgroundServer(app) as server:
            asyncio.run(run_load(server.url, payloads, 32, seconds=0.5))  # warm-up
            result = asyncio.run(run_load(server.url, payloads, 32, seconds=2.0))
        metrics = app.state.metrics
        calls = metrics.sample("hfvision_batch_size_count")  # model calls (micro-batches)
        rows.append(
            {
                "batching": label,
                "clients": 32,
                "requests": result.count,
                "errors": result.errors,
                "req/s": round(result.throughput, 1),
                "p50 ms": round(result.percentile(50), 1),
                "p99 ms": round(result.percentile(99), 1),
                "mean batch": round(metrics.sample("hfvision_requests_total", code="200") / max(calls, 1), 1),
            }
        )
    return rows


def _ui_screenshot(ctx, sd_dir, vit_dir) -> str | None:
    from ...testing.browser import CHROMIUM, CHROMIUM_FLAGS
    from ...utils.import_utils import is_available

    if not (os.path.exists(CHROMIUM) and is_available("gradio") and is_available("playwright")):
        return f"skipped: needs Chromium at {CHROMIUM}, gradio and playwright"
    from playwright.sync_api import sync_playwright

    from ...ui import UIConfig, launch

    with socket.socket() as sock:  # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = UIConfig(
        model=str(sd_dir),
        classifier=str(vit_dir),
        port=port,
        steps=2,
        size=64,
        output_dir=str(ctx.work_dir / "ui-out"),
    )
    demo = launch(config)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(90_000)
            page.goto(demo.local_url)
            page.get_by_label("Subject token").fill("sks")
            page.get_by_label("Class").fill("dog")
            page.locator("#hfv-prompt textarea").fill("a photo of {token} {class} on the beach")
            page.locator("#hfv-generate").click()
            page.locator("#hfv-gallery img").first.wait_for(state="visible")
            page.screenshot(path=str(ctx.path("serving/ui-generate.png")), full_page=True)
            browser.close()
    finally:
        demo.close()
    return None


def run(ctx) -> None:
    import httpx
    import torch
    from huggingface_hub import InferenceClient

    import hfvision
    from hfvision import testing as t

    from ...serving import BackgroundServer, ServeConfig, create_app

    sec = ctx.section
    vit_dir = ctx.model_dir("vit (gender)", lambda d: t.save_tiny_vit_classifier(d))
    threads = torch.get_num_threads()
    pipe = hfvision.pipeline("gender-classification", model=str(vit_dir))
    buffer = io.BytesIO()
    t.sample_image("astronaut").save(buffer, format="PNG")
    astronaut = buffer.getvalue()

    # 1. classify through huggingface_hub's own client, pointed at the local server
    app = create_app(ServeConfig(task="gender-classification", model="demo/tiny-vit"), pipe=pipe)
    with BackgroundServer(app) as server, _loopback_client_allowed():
        client = InferenceClient(base_url=f"{server.url}/models/demo/tiny-vit")
        start = time.perf_counter()
        got = client.image_classification(astronaut)
        seconds = time.perf_counter() - start
        exposition = httpx.get(server.url + "/metrics").text
    metrics = [
        line
        for line in exposition.splitlines()
        if line.startswith(("hfvision_requests_total", "hfvision_batch_size_count"))
    ]
    direct = pipe(t.sample_image("astronaut"))
    same = [(e.label, e.score) for e in got] == [(r["label"], r["score"]) for r in direct]
    sec.text(
        f"hfvision serve (gender-classification, tiny ViT) on {server.url}; "
        f"InferenceClient(base_url=...).image_classification(astronaut PNG) in {seconds * 1000:.0f} ms; "
        f"equal to calling the pipeline directly: {same}"
    )
    sec.table([{"label": e.label, "score": round(e.score, 4)} for e in got], "InferenceClient result (random model)")
    sec.text("GET /metrics (excerpt): " + " | ".join(metrics))
    if not same:
        raise RuntimeError("the server's answer differs from the pipeline's")

    # 2. throughput with micro-batching off vs on (32 concurrent keep-alive clients, 96x96 JPEGs)
    payloads = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "china", "flower"):
        buffer = io.BytesIO()
        t.sample_image(name).resize((96, 96)).save(buffer, format="JPEG")
        payloads.append(buffer.getvalue())
    rows = _throughput(pipe, payloads)
    torch.set_num_threads(threads)
    sec.table(
        rows,
        "Tiny ViT, 32 concurrent clients, 2 s each (numbers depend on this machine's load; see benchmarks/serving.py)",
    )
    if any(r["errors"] for r in rows):
        raise RuntimeError("requests failed under load")

    # 3. the web UI in a headless Chromium
    sd_dir = ctx.model_dir("sd1", lambda d: t.save_tiny_sd(d, "sd1"))
    start = time.perf_counter()
    skipped = _ui_screenshot(ctx, sd_dir, vit_dir)
    if skipped:
        sec.text(f"Web UI screenshot {skipped}.")
    else:
        sec.image(
            ctx.path("serving/ui-generate.png"),
            f"hfvision ui: Generate tab after one 2-step generation with "
            f"the tiny SD1 pipeline ({time.perf_counter() - start:.1f} s incl. starting Gradio and Chromium)",
        )
    shutil.rmtree(ctx.work_dir / "ui-out", ignore_errors=True)
