"""No lost work: a run never overwrites another run's model or checkpoints, "latest" only resumes the same run, a
session keeps its model inside the session folder, and checkpoints from before diffusers' layout still resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hfvision.training import DreamBoothConfig
from hfvision.training.dreambooth.checkpointing import list_checkpoints, resolve_checkpoint
from hfvision.training.dreambooth.config import RESUME_INVARIANT_FIELDS


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def finished_run(tiny_kwargs, train_in_process):
    """A finished 2-step full run (checkpoint at step 1 and 2) in ``out``; returns its kwargs and file snapshot."""
    kwargs = tiny_kwargs(max_train_steps=2, checkpointing_steps=1, resolution=32)
    train_in_process(kwargs)
    _reset_accelerate()
    return kwargs, _snapshot(Path(kwargs["output_dir"]))


def test_another_run_into_the_same_output_dir_refuses_and_changes_nothing(finished_run, train_in_process):
    kwargs, before = finished_run
    out = Path(kwargs["output_dir"])
    assert {"model_index.json", "checkpoint-1/unet/diffusion_pytorch_model.safetensors"} <= set(before)
    for changes in ({"seed": 1}, {"instance_prompt": "a photo of {token} dog"}, {}):  # {}: the same run again
        with pytest.raises(FileExistsError) as info:
            train_in_process({**kwargs, **changes})
        message = str(info.value)
        assert "\n" not in message and "--resume_from_checkpoint" in message and "--overwrite_output_dir" in message
        assert ("this run's" in message) == (changes == {}), message
        _reset_accelerate()
        assert _snapshot(out) == before  # byte-identical: nothing was written, not even training_config.yaml


def test_latest_never_resumes_another_runs_checkpoint(finished_run, train_in_process):
    kwargs, before = finished_run
    out = Path(kwargs["output_dir"])
    with pytest.raises(ValueError, match=r"belong to another run \(seed was 0 and is now 3\).*--overwrite_output_dir"):
        train_in_process({**kwargs, "seed": 3, "resume_from_checkpoint": "latest"})
    assert _snapshot(out) == before
    config = DreamBoothConfig(**kwargs)
    assert resolve_checkpoint("latest", out, config) == out / "checkpoint-2"
    assert resolve_checkpoint("latest", out, DreamBoothConfig(**{**kwargs, "seed": 3})) is None
    assert [s for s, _ in list_checkpoints(out, config)] == [1, 2]


def test_overwrite_output_dir_starts_over(finished_run, train_in_process, load_weights):
    kwargs, before = finished_run
    out = Path(kwargs["output_dir"])
    _, result = train_in_process({**kwargs, "seed": 5, "max_train_steps": 1, "overwrite_output_dir": True})
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]  # the old run's are gone
    assert DreamBoothConfig.from_yaml(out / "training_config.yaml").seed == 5
    assert (
        _snapshot(out)["unet/diffusion_pytorch_model.safetensors"]
        != before["unet/diffusion_pytorch_model.safetensors"]
    )
    with pytest.raises(ValueError, match="pass only one"):
        DreamBoothConfig(**{**kwargs, "overwrite_output_dir": True, "resume_from_checkpoint": "latest"})


def test_missing_named_checkpoint_starts_fresh_with_a_warning(tiny_kwargs, train_in_process, caplog):
    kwargs = tiny_kwargs(max_train_steps=1, resolution=32, resume_from_checkpoint="checkpoint-7")
    _, result = train_in_process(kwargs)
    assert result.global_step == 1
    assert "checkpoint 'checkpoint-7' does not exist" in caplog.text and "starting a new training run" in caplog.text


def test_sessions_keep_their_models_apart(tiny_kwargs, train_in_process, tmp_path, monkeypatch):
    """Two sessions with the default output_dir: each model lands in its own session folder, none in the cwd."""
    monkeypatch.chdir(tmp_path)
    common = tiny_kwargs(max_train_steps=1, resolution=32, session_root=str(tmp_path / "sessions"))
    del common["output_dir"]
    train_in_process({**common, "session": "dog"})
    dog = tmp_path / "sessions" / "dog" / "model"
    before = _snapshot(tmp_path / "sessions" / "dog")
    _reset_accelerate()
    train_in_process({**common, "session": "cat3", "seed": 1})
    assert (dog / "model_index.json").is_file() and (
        tmp_path / "sessions" / "cat3" / "model" / "model_index.json"
    ).is_file()
    assert not (tmp_path / "dreambooth-model").exists()
    assert _snapshot(tmp_path / "sessions" / "dog") == before


def _to_legacy_layout(checkpoint: Path) -> None:
    """Rewrite a checkpoint as the trainer wrote it before diffusers' layout: weights in weights/, no run id."""
    (checkpoint / "weights").mkdir()
    for name in ("unet", "text_encoder"):
        if (checkpoint / name).exists():
            shutil.move(checkpoint / name, checkpoint / "weights" / name)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    del state["run_id"]
    state["config"] = {k: state["config"][k] for k in RESUME_INVARIANT_FIELDS if k != "use_dora"}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state, indent=2))


def test_checkpoints_in_the_old_layout_still_resume_exactly(
    tiny_kwargs, train_in_process, tmp_path, load_weights, assert_bit_identical
):
    kwargs = tiny_kwargs(max_train_steps=4, checkpointing_steps=2, train_text_encoder=True, resolution=32)
    straight = {**kwargs, "output_dir": str(tmp_path / "straight")}
    train_in_process(straight)
    _reset_accelerate()
    resumed = {**kwargs, "output_dir": str(tmp_path / "resumed"), "max_train_steps": 2}
    train_in_process(resumed)
    _reset_accelerate()
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert (checkpoint / "unet" / "config.json").is_file() and (checkpoint / "text_encoder").is_dir()
    _to_legacy_layout(checkpoint)
    assert resolve_checkpoint("latest", tmp_path / "resumed", DreamBoothConfig(**kwargs)) == checkpoint
    _, result = train_in_process({**resumed, "max_train_steps": 4, "resume_from_checkpoint": "latest"})
    assert result.global_step == 4
    final = {k: v for k, v in load_weights(tmp_path / "resumed").items() if k.startswith(("unet/", "text_encoder/"))}
    reference = load_weights(tmp_path / "straight")
    assert_bit_identical({k: reference[k] for k in final}, final)
