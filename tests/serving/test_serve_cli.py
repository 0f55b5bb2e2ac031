"""``hfvision serve``: flags come from ServeConfig; the real command serves, and stops gracefully on Ctrl+C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from hfvision.cli.main import build_parser
from hfvision.data.image_io import MAX_PIXELS
from hfvision.serving.config import ServeConfig


def test_flags_mirror_serve_config():
    from hfvision.cli import serve

    args, _ = build_parser().parse_known_args(["serve", "--model", "org/m"])
    assert args.func.__module__ == "hfvision.cli.serve" and args.passthrough  # parse_config reads the flags
    argv = ["--task", "gender-classification", "--model", "org/m", "--max-batch-size", "8", "--max-wait-ms", "2.5"]
    config, _, extra = serve.parse([*argv, "--onnx", "--num-threads", "1"])
    assert config == ServeConfig(
        task="gender-classification",
        model="org/m",
        max_batch_size=8,
        max_wait_ms=2.5,
        onnx=True,
        num_threads=1,
        max_pixels=MAX_PIXELS,
    )
    # the command line's one default task and one pixel budget, shared with classify and data prepare
    defaults, ray_options, extra = serve.parse([])
    assert (defaults.task, defaults.max_pixels, extra.backend) == ("gender-classification", MAX_PIXELS, "uvicorn")
    assert config.host == "127.0.0.1" and config.model_name == "org/m"
    with pytest.raises(SystemExit):
        serve.parse(["--task", "object-detection"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "ocr"}, "task='ocr' is not one of"),
        ({"max_batch_size": 0}, "max_batch_size=0 must be >= 1"),
        ({"timeout": 0}, "timeout=0 must be > 0"),
        ({"port": 70000}, "port=70000"),
    ],
)
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


def _children(pid: int) -> list[int]:
    """Worker processes of ``pid`` (multiprocessing's resource tracker left out)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(p) for p in f.read().split()]
    workers = []
    for child in children:
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as f:
            if b"resource_tracker" not in f.read():
                workers.append(child)
    return workers


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_command_end_to_end(workers, tiny_model_dir, photo_bytes, vit_pipe, assert_same_labels):
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from hfvision.data import load_image

    port = _free_port()
    model = str(tiny_model_dir("vit"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hfvision.cli.main",
            "serve",
            "--task",
            "image-classification",
            "--model",
            model,
            "--port",
            str(port),
            "--max-wait-ms",
            "1",
            "--workers",
            str(workers),
            "--verbose",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        for name in ("astronaut", "chelsea", "coffee"):
            response = httpx.post(f"{url}/models/{os.path.basename(model)}", content=photo_bytes[name], timeout=60)
            assert response.status_code == 200, response.text
            assert_same_labels(response.json(), vit_pipe(load_image(photo_bytes[name])))
        if workers > 1:  # uvicorn's supervisor with one process per worker, each serving the model
            deadline = time.monotonic() + 120
            while len(_children(proc.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.3)
            assert len(_children(proc.pid)) == workers
            assert httpx.get(url + "/health", timeout=10).json()["worker_pid"] in _children(proc.pid)
        proc.send_signal(signal.SIGINT)  # Ctrl+C: graceful shutdown, exit status 0
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        assert f"on http://127.0.0.1:{port}" in output and "Traceback" not in output
        if workers == 1:
            assert "batch worker stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_fail_fast_when_the_model_does_not_load(tmp_path, monkeypatch, capsys):
    """With --workers the model is loaded once before uvicorn starts: a bad model never reaches the workers
    (uvicorn would restart crashing workers forever)."""
    pytest.importorskip("uvicorn")
    import uvicorn

    from hfvision.cli.main import main
    from hfvision.serving import tasks

    started = []
    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", lambda *a, **k: started.append((a, k)))
    monkeypatch.setattr(tasks, "load_runner", lambda config: (_ for _ in ()).throw(OSError(f"{config.model}: broken")))
    broken = tmp_path / "no-such-model"
    broken.mkdir()  # passes the folder checks, fails to load
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_text("{}")
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(1, dtype=np.float32)}, str(broken / "model.safetensors"))
    assert main(["serve", "--model", str(broken), "--workers", "2", "--port", "0"]) == 1
    assert started == [] and ServeConfig.ENV_VAR not in os.environ
    error = capsys.readouterr().err.strip()
    assert error.startswith("hfvision serve: error:") and "no-such-model" in error and "\n" not in error


def test_workers_hand_the_config_to_uvicorn_workers(tiny_model_dir, monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn
    import uvicorn.supervisors

    from hfvision.cli.main import main

    started = []

    class Supervisor:  # records what uvicorn's worker supervisor would run, with the socket already listening
        def __init__(self, config, sockets):
            started.append((config, sockets, sockets[0].getsockname()[1]))

        def run(self):
            pass

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Supervisor)
    monkeypatch.delenv(ServeConfig.ENV_VAR, raising=False)
    model = str(tiny_model_dir("vit"))
    code = main(
        [
            "serve",
            "--task",
            "image-classification",
            "--model",
            model,
            "--workers",
            "3",
            "--port",
            "0",
            "--max-batch-size",
            "8",
        ]
    )
    assert code == 0
    [(options, sockets, port)] = started
    assert options.app == "hfvision.serving.app:app_from_env" and options.factory and options.workers == 3
    assert options.log_level == "warning" and options.access_log is False  # access lines need --verbose
    assert port > 0 and sockets[0].fileno() == -1  # the port was listening while the workers ran; closed after
    config = ServeConfig.from_json(os.environ[ServeConfig.ENV_VAR])
    assert config == ServeConfig(
        task="image-classification", model=model, workers=3, port=port, max_batch_size=8, max_pixels=MAX_PIXELS
    )
    monkeypatch.delenv(ServeConfig.ENV_VAR)


def test_the_address_is_printed_once_the_port_listens(tiny_model_dir, monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    import uvicorn

    from hfvision.cli.main import main

    seen = []

    def serve(self, sockets=None):  # instead of serving: connect (the OS accepts: listening), read what was printed
        port = sockets[0].getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        seen.append((port, capsys.readouterr().out))

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    model = str(tiny_model_dir("vit"))
    assert main(["serve", "--task", "image-classification", "--model", model, "--port", "0"]) == 0
    [(port, printed)] = seen
    assert printed.startswith(
        f"hfvision serve: image-classification model {os.path.basename(model)} on http://127.0.0.1:{port} ("
    )
