"""Browser-test fixtures: the UI launched with tiny models on 127.0.0.1, and a headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

CHROMIUM = os.environ.get("HFVISION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Playwright; skipped (with the reason) when either is missing."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium, or make setup) "
            "or set HFVISION_CHROMIUM to run the browser tests"
        )
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (hfvision[dev])")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_app(tiny_model_dir, tmp_path_factory):
    """The UI with the tiny SD1 pipeline (Generate) and the tiny ViT (Classify), on a free loopback port."""
    pytest.importorskip("gradio", reason="the [ui] extra (gradio) is not installed")
    from hfvision.ui import UIConfig, launch

    config = UIConfig(
        model=str(tiny_model_dir("sd1")),
        classifier=str(tiny_model_dir("vit")),
        port=free_port(),
        steps=2,
        size=64,
        output_dir=str(tmp_path_factory.mktemp("ui-out")),
        controlnet=str(tiny_model_dir("controlnet-sd1")),
    )
    demo = launch(config)
    yield demo, config
    demo.close()
