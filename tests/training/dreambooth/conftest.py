"""Fixtures for the DreamBooth trainer tests: tiny photos, a config factory, fresh-process runs with SIGKILL.

Runs use the tiny seeded SD models from ``tiny_model_dir`` at 64 px, 2 instance + 2 class images per batch. Torch is
kept to one thread in these tests (in-process and in the subprocesses): the test machine is shared, and
oversubscribed OpenMP threads make tiny models several times slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

# Runs a config in a fresh interpreter; SIGKILLs itself at the end of step KILL_AT (after any checkpoint of it).
_RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys
    from hfvision.training import DreamBoothConfig, DreamBoothTrainer

    kwargs, kill_at = json.loads(sys.argv[1]), int(sys.argv[2])

    class Killer:
        def on_step_end(self, trainer, step, logs):
            print(json.dumps({"step": step, **logs}), flush=True)
            if step == kill_at:
                if trainer.session is not None and trainer.session.mirror is not None:
                    trainer.session.mirror.wait()  # the checkpoint reached the Hub before the machine "died"
                os.kill(os.getpid(), signal.SIGKILL)

    result = DreamBoothTrainer(DreamBoothConfig(**kwargs), callbacks=[Killer()]).train()
    print(json.dumps({"done": result.global_step, "loss": result.final_loss}), flush=True)
    """
)


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for training subprocesses (this one's, single-threaded torch)."""
    return {**os.environ, **SUBPROCESS_ENV}


@pytest.fixture(autouse=True)
def _fresh_accelerate():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory) -> Path:
    """Three small photos (one not square, so random crops really vary) with no caption files."""
    from hfvision.testing import sample_image

    folder = tmp_path_factory.mktemp("instance")
    sample_image("astronaut").resize((64, 64)).save(folder / "astronaut.png")
    sample_image("coffee").resize((64, 64)).save(folder / "coffee.png")
    sample_image("rocket").resize((80, 64)).save(folder / "rocket.png")
    return folder


@pytest.fixture(scope="session")
def class_dir(tmp_path_factory) -> Path:
    """Two class photos supplied by the "user", so runs need no class-image generation unless a test wants it."""
    from hfvision.testing import sample_image

    folder = tmp_path_factory.mktemp("class")
    sample_image("chelsea").resize((64, 64)).save(folder / "chelsea.png")
    sample_image("china").resize((64, 64)).save(folder / "china.png")
    return folder


@pytest.fixture(scope="session")
def tiny_run_kwargs(tiny_model_dir, instance_dir, class_dir):
    """``tiny_run_kwargs(output_dir, family="sd1", **overrides)`` -> DreamBoothConfig keyword arguments for a tiny run
    writing to ``output_dir``: 64 px, batches of 2 instance + 2 class images (user-supplied class images; pass
    ``class_data_dir=None`` to generate them). Session-scoped, for module-scoped runs; tests use ``tiny_kwargs``."""
    from hfvision.testing.dreambooth import tiny_dreambooth_kwargs

    def make(output_dir: str | os.PathLike, family: str = "sd1", **overrides) -> dict:
        return tiny_dreambooth_kwargs(
            tiny_model_dir(family),
            instance_dir,
            output_dir,
            **{"class_data_dir": str(class_dir), "checkpointing_steps": 100, **overrides},
        )

    return make


@pytest.fixture
def tiny_kwargs(tiny_run_kwargs, tmp_path):
    """``tiny_kwargs(family="sd1", **overrides)``: ``tiny_run_kwargs`` writing to this test's ``tmp_path / "out"``."""

    def make(family: str = "sd1", **overrides) -> dict:
        return tiny_run_kwargs(tmp_path / "out", family, **overrides)

    return make


@pytest.fixture
def run_training():
    """``run_training(kwargs, kill_at=0)`` trains in a fresh process; returns (returncode, logged steps, stderr)."""

    def run(kwargs: dict, kill_at: int = 0, env: dict | None = None, cwd: Path | None = None):
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, json.dumps(kwargs), str(kill_at)],
            env={**os.environ, **SUBPROCESS_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=cwd,
        )
        logs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if kill_at == 0 and proc.returncode != 0:
            raise AssertionError(f"training failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
        return proc.returncode, logs, proc.stderr

    return run


def _load_weights(folder: Path) -> dict:
    """Every tensor of every .safetensors file under ``folder`` (keys prefixed with the relative path)."""
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(Path(folder).rglob("*.safetensors")):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("checkpoint-"):
            continue
        tensors.update({f"{rel}:{k}": v for k, v in load_file(path).items()})
    return tensors


def _assert_bit_identical(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys() and a
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


@pytest.fixture
def load_weights():
    return _load_weights


@pytest.fixture
def assert_bit_identical():
    return _assert_bit_identical


@pytest.fixture
def train_in_process():
    """``train_in_process(kwargs, callbacks=None)`` -> (trainer, result), in this process."""

    def run(kwargs: dict, callbacks=None):
        from hfvision.training import DreamBoothConfig, DreamBoothTrainer

        trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs), callbacks=callbacks)
        return trainer, trainer.train()

    return run
