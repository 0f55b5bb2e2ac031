"""Bad input fails with one clear line before any model is loaded; NaN losses are skipped, then stop the run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hfvision.training import DreamBoothConfig, DreamBoothTrainer, TrainingDivergedError


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any attempt to load a base model fails the test: errors must come first."""
    from hfvision.training.dreambooth import preparation as preparation_module  # step 4 loads the base

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the input error was reported")

    monkeypatch.setattr(preparation_module, "load_base_pipeline", forbidden)


def _fails(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DreamBoothTrainer(DreamBoothConfig(**kwargs)).train()


def test_bad_inputs_fail_before_heavy_work(tiny_kwargs, tmp_path, no_model_loading, monkeypatch):
    _fails(tiny_kwargs(instance_data_dir=str(tmp_path / "nope")), FileNotFoundError, "does not exist")
    (tmp_path / "empty").mkdir()
    _fails(tiny_kwargs(instance_data_dir=str(tmp_path / "empty")), ValueError, "holds no images")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "photo.jpg").write_bytes(b"<html>not a photo</html>")
    _fails(tiny_kwargs(instance_data_dir=str(bad)), ValueError, "photo.jpg")
    _fails(tiny_kwargs(mixed_precision="fp16"), ValueError, "mixed_precision='fp16' needs a GPU; on CPU use")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    _fails(tiny_kwargs(), ValueError, "needs a GPU")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    pixart = tmp_path / "pixart"  # Flux and SD3 train since issue 19; other pipelines are still refused
    pixart.mkdir()
    (pixart / "model_index.json").write_text(json.dumps({"_class_name": "PixArtAlphaPipeline", "transformer": ["x"]}))
    _fails(tiny_kwargs(pretrained_model_name_or_path=str(pixart)), ValueError, "is a PixArtAlphaPipeline; the Dream")
    _fails(tiny_kwargs(pretrained_model_name_or_path="sd15", resolution=768), ValueError, "768")
    _fails(tiny_kwargs(pretrained_model_name_or_path="sd1.5"), ValueError, "did you mean 'sd15'")
    _fails(
        tiny_kwargs(resume_from_checkpoint="checkpoint-9", strict_resume=True),
        FileNotFoundError,
        r"resume_from_checkpoint='checkpoint-9': no such checkpoint in .* \(--strict_resume\)",
    )
    from hfvision.utils import is_available

    if not is_available("bitsandbytes"):
        _fails(tiny_kwargs(use_8bit_adam=True), ImportError, "use_8bit_adam needs the 'bitsandbytes' package")


def test_resume_refuses_a_changed_run(tiny_kwargs, train_in_process, tmp_path):
    kwargs = tiny_kwargs(max_train_steps=1, checkpointing_steps=1, resolution=32)
    train_in_process(kwargs)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    with pytest.raises(ValueError, match="resolution was 32 and is now 40"):
        train_in_process({**kwargs, "resolution": 40, "max_train_steps": 2, "resume_from_checkpoint": "latest"})


class _NanAt:
    """Makes the loss NaN at the given steps; records the UNet weights after each step."""

    def __init__(self, trainer_cls, steps):
        self.steps, self.snapshots = set(steps), {}
        original = trainer_cls.compute_loss

        def compute_loss(trainer, batch):
            loss = original(trainer, batch)
            return loss * math.nan if trainer.global_step + 1 in self.steps else loss

        self.compute_loss = compute_loss

    def on_step_end(self, trainer, step, logs):
        unet = trainer.accelerator.unwrap_model(trainer.prepared_denoiser)
        self.snapshots[step] = {k: v.clone() for k, v in unet.state_dict().items()}


def test_nan_steps_are_skipped_then_the_run_stops(tiny_kwargs, train_in_process, monkeypatch, caplog):
    hook = _NanAt(DreamBoothTrainer, steps=[2])
    monkeypatch.setattr(DreamBoothTrainer, "compute_loss", hook.compute_loss)
    kwargs = tiny_kwargs(max_train_steps=3, resolution=32)
    _, result = train_in_process(kwargs, callbacks=[hook])
    assert result.global_step == 3
    s1, s2, s3 = (hook.snapshots[i] for i in (1, 2, 3))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # step 2 was skipped
    assert not all(torch.equal(s2[k], s3[k]) for k in s2)  # step 3 trained again
    assert "non-finite loss at step 2: step skipped" in caplog.text

    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    hook = _NanAt(DreamBoothTrainer, steps=[2, 3, 4])
    monkeypatch.setattr(DreamBoothTrainer, "compute_loss", hook.compute_loss)
    out = Path(kwargs["output_dir"]).with_name("diverged")
    kwargs = {
        **kwargs,
        "output_dir": str(out),
        "max_train_steps": 6,
        "checkpointing_steps": 1,
        "checkpoints_total_limit": 1,
        "max_nan_steps": 3,
    }
    with pytest.raises(TrainingDivergedError, match=r"3 consecutive steps .* Last good checkpoint: .*checkpoint-1"):
        train_in_process(kwargs, callbacks=[hook])
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]  # kept, not pruned by NaN steps
    assert not (out / "model_index.json").exists()


def test_bf16_on_cpu_keeps_trainable_weights_fp32(tiny_kwargs, train_in_process):
    kwargs = tiny_kwargs(
        mixed_precision="bf16",
        use_lora=True,
        train_text_encoder=True,
        max_train_steps=1,
        gradient_checkpointing=True,
        resolution=32,
    )
    trainer, result = train_in_process(kwargs)
    assert math.isfinite(result.final_loss)
    unet = trainer.accelerator.unwrap_model(trainer.prepared_denoiser)
    trainable = {p.dtype for p in unet.parameters() if p.requires_grad}
    frozen = {p.dtype for p in unet.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    assert trainer.vae.dtype == torch.bfloat16
    assert unet.is_gradient_checkpointing and trainer.text_encoders[0].is_activation_checkpointing
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(result.lora_weights).values()} == {torch.float32}
