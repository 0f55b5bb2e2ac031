"""Test-suite setup: offline by default, tiny models built once per session, a local Hub server on demand.

huggingface_hub reads HF_HUB_OFFLINE / HF_ENDPOINT once, at import time, so the environment is set
here before anything imports it. Tests that talk to the local Hub server run their client code in a
subprocess with :func:`hfvision.testing.hub_env` (which is also what "a fresh process" means for
the Hub round-trip requirements).
"""

from __future__ import annotations

import os
import tempfile

_SESSION_TMP = tempfile.mkdtemp(prefix="hfvision-tests-")
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_XET="1",
    HF_HOME=os.path.join(_SESSION_TMP, "hf_home"),
    HFVISION_CACHE=os.environ.get("HFVISION_CACHE", os.path.join(_SESSION_TMP, "hfvision_cache")),
    GRADIO_ANALYTICS_ENABLED="False",
    TOKENIZERS_PARALLELISM="false",
)
# Tiny models run fastest single-threaded, and `make test` runs two pytest workers on two cores
# (also inherited by the subprocesses tests start).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Headless Debian Chromium for the browser tests (UI, DreamBooth report)
from hfvision.testing.browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


# name -> builder(out_dir); every tiny component the suite shares, saved once per session.
def _builders():
    from hfvision import testing as t

    return {
        "vit": lambda d: t.save_tiny_vit_classifier(d),
        "timm-resnet": lambda d: t.save_tiny_timm_resnet(d),
        "sd1": lambda d: t.save_tiny_sd(d, "sd1"),
        "sd2": lambda d: t.save_tiny_sd(d, "sd2"),
        "sdxl": lambda d: t.save_tiny_sd(d, "sdxl"),
        "controlnet-sd1": lambda d: t.tiny_controlnet("sd1").save_pretrained(d),
    }


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """torch on one CPU thread for the whole session (``_torch_thread_reset`` undoes changes after each test).

    ``make test`` runs two workers on a 2-core machine: tiny models run fastest single-threaded, and two
    OpenMP threads per worker wait on each other (5-20x slower; a 2-step 64x64 generation: 15 s vs 2.5 s).
    OMP_NUM_THREADS above covers subprocesses; this covers a user environment that sets it higher.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _torch_thread_reset():
    """Put torch back on one thread after a test that changed it without restoring it."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(name)`` -> a directory holding that tiny model, built on first use (read-only by convention)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{name}")
            _builders()[name](out)
            cache[name] = out
        return cache[name]

    return get


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """A running :class:`hfvision.testing.LocalHubServer` on 127.0.0.1 (session-wide)."""
    from hfvision.testing import LocalHubServer

    server = LocalHubServer(tmp_path_factory.mktemp("hub-storage"))
    server.start()
    yield server
    server.stop()


def _assert_same_predictions(actual, expected, atol=1e-6):
    """Same labels in the same order, scores equal within ``atol`` (float32 sums depend on the batch size)."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if isinstance(e, list):
            _assert_same_predictions(a, e, atol)
        else:
            assert a["label"] == e["label"] and abs(a["score"] - e["score"]) <= atol, (a, e)


@pytest.fixture(scope="session")
def same_predictions():
    """``same_predictions(actual, expected, atol=1e-6)``: classifier outputs (nested lists of label/score) agree."""
    return _assert_same_predictions


@pytest.fixture(scope="session")
def accelerate_launch():
    """``accelerate_launch(*cli_args, port=N)``: the ``accelerate launch`` command running ``hfvision`` in two processes
    (``--multi_gpu`` with no visible GPU gives two gloo CPU processes, MULTI_CPU)."""
    options = "--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no".split()

    def command(*cli_args: str, port: int) -> list[str]:
        accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
        return [accelerate, "launch", *options, "--main_process_port", str(port), "-m", "hfvision.cli.main", *cli_args]

    return command


@pytest.fixture
def run_python(tmp_path):
    """Run Python code in a fresh interpreter; ``hub=server`` points it at the local Hub. Returns stdout."""

    def run(code: str, hub=None, env: dict | None = None, timeout: float = 300) -> str:
        from hfvision.testing import hub_env

        full_env = {**os.environ, "HF_HOME": str(tmp_path / "client_hf_home"), **(env or {})}
        if hub is not None:
            full_env.update(hub_env(hub.endpoint))
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        if proc.returncode != 0:
            raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    return run


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
