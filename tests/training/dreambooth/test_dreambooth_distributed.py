"""Two CPU processes (gloo) through `accelerate launch`: train, checkpoint per-rank state, resume, one pipeline.

accelerate 1.15 starts several CPU processes only through torchrun (`--multi_gpu`, which on a machine without a GPU
hfvision runs on CPU with gloo) or MPI (`--cpu --mpirun_hostfile`); `--cpu --num_processes 2` alone starts one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_two_cpu_processes_train_checkpoint_and_resume(
    tiny_kwargs, tmp_path, load_weights, cli_flags, launch_two_processes
):
    kwargs = tiny_kwargs(max_train_steps=2, checkpointing_steps=2, train_text_encoder=True, resolution=32)
    flags = cli_flags(kwargs)
    launch_two_processes(flags, tmp_path)
    out = Path(kwargs["output_dir"])
    ckpt = out / "checkpoint-2"
    assert {p.name for p in ckpt.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    assert {p.name for p in ckpt.glob("noise_rng_*")} == {"noise_rng_0.safetensors", "noise_rng_1.safetensors"}
    assert json.loads((ckpt / "trainer_state.json").read_text())["num_processes"] == 2
    first = load_weights(out)

    # resume the same run on 2 processes for one more step
    proc = launch_two_processes([*flags, "--max_train_steps", "3", "--resume_from_checkpoint", "latest"], tmp_path)
    assert "resumed from" in proc.stderr
    second = load_weights(out)
    unet = [k for k in first if k.startswith("unet/")]
    assert any(not torch.equal(first[k], second[k]) for k in unet)
    base = load_weights(kwargs["pretrained_model_name_or_path"])
    assert any(not torch.equal(base[k], first[k]) for k in unet)
