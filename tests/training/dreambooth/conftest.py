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
    """``tiny_kwargs(family="sd1", prior=True, concepts=None, **overrides)``: ``tiny_run_kwargs`` writing to this
    test's ``tmp_path / "out"``; ``prior=False`` turns prior preservation off (no class prompt, no class images);
    ``concepts`` (a concepts-list JSON path) takes the subjects and their class prompts and folders from that file."""

    def make(family: str = "sd1", prior: bool = True, concepts: str | os.PathLike | None = None, **overrides) -> dict:
        if not prior:
            overrides = {"with_prior_preservation": False, "class_prompt": None, "class_data_dir": None, **overrides}
        if concepts is not None:
            from_file = {"instance_data_dir": None, "class_prompt": None, "class_data_dir": None}
            overrides = {**from_file, "concepts_list": str(concepts), **overrides}
        return tiny_run_kwargs(tmp_path / "out", family, **overrides)

    return make


@pytest.fixture(scope="session")
def flow_model_dir(tmp_path_factory):
    """``flow_model_dir("flux-dev" | "flux-schnell" | "sd3")`` -> a saved tiny pipeline folder (built once)."""
    from hfvision.testing import save_tiny_flux, save_tiny_sd3

    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            cache[name] = save_tiny_sd3(out) if name == "sd3" else save_tiny_flux(out, name.split("-")[1])
        return cache[name]

    return get


@pytest.fixture
def flow_kwargs(flow_model_dir, tiny_kwargs):
    """``flow_kwargs(name="flux-dev", prior=True, **overrides)``: ``tiny_kwargs`` for a tiny Flux/SD3 run at 32 px,
    batch 1, 2 steps; ``prior=False`` turns prior preservation off (no class prompt, no class images)."""

    def make(name: str = "flux-dev", prior: bool = True, **overrides) -> dict:
        kwargs = dict(
            pretrained_model_name_or_path=str(flow_model_dir(name)),
            resolution=32,
            train_batch_size=1,
            max_train_steps=2,
        )
        return {**tiny_kwargs(prior=prior, **kwargs), **overrides}

    return make


EXAMPLE_SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "train_dreambooth.py"


def _cli_flags(kwargs: dict) -> list[str]:
    """Config keyword arguments as command-line flags (``True`` -> ``--flag``; ``False`` and ``None`` left out)."""
    flags = []
    for key, value in kwargs.items():
        if value is True:
            flags.append(f"--{key}")
        elif value not in (False, None):
            flags += [f"--{key}", str(value)]
    return flags


@pytest.fixture
def cli_flags():
    return _cli_flags


@pytest.fixture
def launch_two_processes(subprocess_env):
    """``launch_two_processes(args, cwd, script=EXAMPLE_SCRIPT)`` runs ``script args`` on two CPU processes (gloo)
    through ``accelerate launch --multi_gpu``; the test fails with the output's tail unless it exits 0.

    accelerate starts several CPU processes only through torchrun (``--multi_gpu``, which on a machine without a GPU
    runs on CPU with gloo) or MPI; ``--cpu --num_processes 2`` alone starts one."""

    def launch(args: list[str], cwd: Path, script: Path = EXAMPLE_SCRIPT) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "2",
            "--multi_gpu",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "0",
            str(script),
            *args,
        ]
        proc = subprocess.run(cmd, cwd=cwd, env=subprocess_env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-5000:]}"
        return proc

    return launch


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
def assert_resume_matches_straight_run(run_training, load_weights, assert_bit_identical, tmp_path):
    """``assert_resume_matches_straight_run(kwargs, n)``: with ``kwargs`` of a ``2n``-step run checkpointing every
    ``n`` steps, one uninterrupted run and one SIGKILLed after step ``n + 1`` then resumed from ``latest`` (fresh
    processes, under ``tmp_path``) log the same losses step for step and end with bit-identical weights."""

    def check(kwargs: dict, n: int) -> None:
        import signal

        import torch

        from hfvision.training.dreambooth.checkpointing import list_checkpoints

        _, straight, _ = run_training({**kwargs, "output_dir": str(tmp_path / "straight")})
        killed = {**kwargs, "output_dir": str(tmp_path / "killed")}
        code, killed_logs, _ = run_training(killed, kill_at=n + 1)
        assert code == -signal.SIGKILL and [s for s, _ in list_checkpoints(tmp_path / "killed")] == [n]
        _, resumed, _ = run_training({**killed, "resume_from_checkpoint": "latest"})
        losses = {r["step"]: r["loss"] for r in straight if "step" in r}
        assert [r["step"] for r in resumed if "step" in r] == list(range(n + 1, 2 * n + 1))
        for r in killed_logs + [r for r in resumed if "step" in r]:
            assert r["loss"] == losses[r["step"]]
        assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "killed"))
        assert torch.isfinite(torch.tensor(list(losses.values()))).all()

    return check


@pytest.fixture
def train_in_process():
    """``train_in_process(kwargs, callbacks=None)`` -> (trainer, result), in this process."""

    def run(kwargs: dict, callbacks=None):
        from hfvision.training import DreamBoothConfig, DreamBoothTrainer

        trainer = DreamBoothTrainer(DreamBoothConfig(**kwargs), callbacks=callbacks)
        return trainer, trainer.train()

    return run
