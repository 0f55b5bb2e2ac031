"""``hfvision serve``: flags come from ServeConfig; the real command serves, and stops gracefully on Ctrl+C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from hfvision.cli.main import build_parser
from hfvision.serving.config import ServeConfig


def test_flags_mirror_serve_config():
    args = build_parser().parse_args(["serve", "--task", "gender-classification", "--model", "org/m",
                                      "--max-batch-size", "8", "--max-wait-ms", "2.5", "--onnx", "--num-threads", "1"])  # fmt: skip
    assert args.func.__module__ == "hfvision.cli.serve"
    config = ServeConfig(**{k: getattr(args, k) for k in ServeConfig.__dataclass_fields__})
    assert config == ServeConfig(task="gender-classification", model="org/m", max_batch_size=8, max_wait_ms=2.5,
                                 onnx=True, num_threads=1)  # fmt: skip
    assert config.host == "127.0.0.1" and config.model_name == "org/m"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--task", "object-detection"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"task": "ocr"}, "task='ocr' is not one of"), ({"max_batch_size": 0}, "max_batch_size=0 must be >= 1"),
     ({"timeout": 0}, "timeout=0 must be > 0"), ({"port": 70000}, "port=70000")],
)  # fmt: skip
def test_invalid_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(**kwargs)


def test_missing_extra_fails_softly(monkeypatch):
    from hfvision.utils import import_utils

    monkeypatch.setattr(import_utils, "is_available", lambda module: module != "fastapi")
    from hfvision.serving.app import create_app

    with pytest.raises(ImportError, match=r"hfvision serve needs the 'fastapi' package.*hfvision\[serve\]"):
        create_app(ServeConfig(model="x"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_command_end_to_end(tiny_model_dir, photo_bytes):
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    port = _free_port()
    model = str(tiny_model_dir("vit"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfvision.cli.main", "serve", "--task", "image-classification", "--model", model,
         "--port", str(port), "--max-wait-ms", "1"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout.read() if proc.poll() else "timeout"
            )
            time.sleep(0.3)
        response = httpx.post(f"{url}/models/{os.path.basename(model)}", content=photo_bytes["astronaut"], timeout=60)
        assert response.status_code == 200 and [r["label"] for r in response.json()] != []
        proc.send_signal(signal.SIGINT)  # Ctrl+C: graceful shutdown, exit status 0
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        assert f"on http://127.0.0.1:{port}" in output and "batch worker stopped" in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
