"""Exact resume: 2N steps straight vs N steps, SIGKILL, resume to 2N => bit-identical final weights (CPU).

The killed and resumed runs are fresh processes; the killed run dies by SIGKILL one step after its checkpoint, so it
also holds weights, optimizer and RNG state that the checkpoint does not, and the resumed run must not depend on
any of it. These runs use 32 px (16x16 latents) to stay within the test budget; the math is the same at any size.
"""

from __future__ import annotations

import json
import signal

import pytest

from hfvision.training.dreambooth.checkpointing import list_checkpoints, read_trainer_state, resolve_checkpoint

N = 3


def _straight_killed_resumed(run_training, kwargs: dict, tmp_path, straight_runner=None):
    straight = {**kwargs, "output_dir": str(tmp_path / "straight")}
    killed = {**kwargs, "output_dir": str(tmp_path / "killed")}
    _, straight_logs, _ = (straight_runner or run_training)(straight)
    returncode, killed_logs, _ = run_training(killed, kill_at=N + 1)
    assert returncode == -signal.SIGKILL
    assert [r["step"] for r in killed_logs] == list(range(1, N + 2))  # it did run past the checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path / "killed")] == [N]
    _, resumed_logs, _ = run_training({**killed, "resume_from_checkpoint": "latest"})
    assert [r["step"] for r in resumed_logs if "step" in r] == list(range(N + 1, 2 * N + 1))
    return straight_logs, killed_logs, resumed_logs


def test_sigkill_and_resume_is_bit_identical(
    tiny_kwargs, run_training, train_in_process, tmp_path, load_weights, assert_bit_identical
):
    """Full fine-tune, prior preservation, text encoder trained the whole run, random crops. The uninterrupted run
    trains in this process (one torch thread, like the subprocesses)."""

    def straight_in_process(kwargs):
        logs = []

        class Log:
            def on_step_end(self, trainer, step, step_logs):
                logs.append({"step": step, **step_logs})

        train_in_process(kwargs, callbacks=[Log()])
        return 0, logs, ""

    kwargs = tiny_kwargs(max_train_steps=2 * N, checkpointing_steps=N, train_text_encoder=True, resolution=32)
    straight_logs, killed_logs, resumed_logs = _straight_killed_resumed(
        run_training, kwargs, tmp_path, straight_in_process
    )

    # the same losses step by step (the killed run's steps 1..N+1 and the resumed run's N+1..2N)
    losses = {r["step"]: r["loss"] for r in straight_logs if "step" in r}
    for r in killed_logs + [r for r in resumed_logs if "step" in r]:
        assert r["loss"] == losses[r["step"]]
    assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "killed"))
    # and the text encoder really trained: it differs from the base
    base = load_weights(tiny_kwargs()["pretrained_model_name_or_path"])
    key = next(k for k in base if k.startswith("text_encoder/") and "q_proj.weight" in k)
    assert not (base[key] == load_weights(tmp_path / "straight")[key]).all()


@pytest.mark.slow
def test_two_stage_lora_resume_is_bit_identical(
    tiny_kwargs, run_training, tmp_path, load_weights, assert_bit_identical
):
    """LoRA on UNet + text encoder, text encoder frozen and dropped after step 2 (before the checkpoint), gradient
    accumulation with a partial window at each epoch end (3 micro-batches per epoch, 2 per step), resume mid-epoch,
    noise offset, min-SNR, cached latents and pre-computed text embeddings."""
    kwargs = tiny_kwargs(
        max_train_steps=2 * N,
        checkpointing_steps=N,
        use_lora=True,
        rank=4,
        train_text_encoder=True,
        train_batch_size=1,
        text_encoder_steps=2,
        text_encoder_lr=5e-4,
        gradient_accumulation_steps=2,
        noise_offset=0.1,
        snr_gamma=5.0,
        center_crop=True,
        cache_latents=True,
        pre_compute_text_embeddings=True,
        lr_scheduler="cosine",
        lr_warmup_steps=1,
        resolution=32,
    )
    straight_logs, _, _ = _straight_killed_resumed(run_training, kwargs, tmp_path)
    assert_bit_identical(load_weights(tmp_path / "straight"), load_weights(tmp_path / "killed"))
    state = read_trainer_state(tmp_path / "killed" / f"checkpoint-{N}")
    assert state["text_encoder_frozen"] is True and state["global_step"] == N
    assert (state["epoch"], state["step_in_epoch"], state["micro_batches_per_epoch"]) == (1, 1, 3)
    lrs = [r.get("text_encoder_lr") for r in straight_logs if "step" in r]
    assert lrs[0] is not None and lrs[1] is not None and all(lr is None for lr in lrs[2:])


def test_latest_ignores_half_written_checkpoints(tmp_path):
    """A kill during a checkpoint write leaves only a hidden temp folder, which "latest" never picks."""
    good = tmp_path / "checkpoint-10"
    good.mkdir()
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    (tmp_path / ".checkpoint-20.tmp").mkdir()  # interrupted save
    (tmp_path / "checkpoint-30").mkdir()  # not written by the trainer (no state file)
    assert resolve_checkpoint("latest", tmp_path) == good
    assert resolve_checkpoint("checkpoint-10", tmp_path) == good
    with pytest.raises(ValueError, match="not a complete hfvision checkpoint"):
        resolve_checkpoint("checkpoint-30", tmp_path)
    with pytest.raises(FileNotFoundError, match="use 'latest'"):
        resolve_checkpoint("checkpoint-40", tmp_path)
    assert resolve_checkpoint("latest", tmp_path / "empty") is None
