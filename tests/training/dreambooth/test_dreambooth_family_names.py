"""The trainer speaks the family table's vocabulary (sd1/sd2/sdxl, no trainer-only "sd"), reads the registry's
record instead of copying it, and what it writes to disk keeps working across the rename: checkpoints (which record
no family) resume, and an output folder (whose model_index.json records ``family``) resolves to the same family."""

from __future__ import annotations

import json

import pytest

from hfvision.models import get_base_model
from hfvision.training.dreambooth.components import resolve_base_model


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "flux"])
def test_folders_resolve_to_table_families(family, tiny_model_dir, tmp_path):
    from hfvision.testing import save_tiny_flux

    folder = save_tiny_flux(tmp_path / "flux") if family == "flux" else tiny_model_dir(family)
    base = resolve_base_model(str(folder))
    assert (base.kind, base.family, base.entry, base.license) == ("dir", family, None, None)


def test_registry_key_carries_the_registry_record():
    base = resolve_base_model("sd21", resolution=768)
    assert base.entry is get_base_model("sd21")
    assert (base.family, base.registry_key, base.license) == ("sd2", "sd21", "openrail++")
    assert (base.source, base.revision, base.prediction_type) == (
        "stabilityai/stable-diffusion-2-1",
        "main",
        "v_prediction",
    )


def test_recorded_family_decides_between_sd1_and_sd2(tiny_model_dir, tmp_path):
    """A DreamBooth output records its family in model_index.json; SD 1.x and 2.x share their pipeline class."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir("sd1"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(
        json.dumps({**index, "_class_name": "DreamBoothPipeline", "family": "sd2"})
    )
    assert resolve_base_model(str(folder)).family == "sd2"
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "DreamBoothPipeline"}))
    assert resolve_base_model(str(folder)).family == "sd1"  # nothing recorded: the UNet config tells


def test_sd2_checkpoint_resumes_and_output_resolves_to_sd2(tiny_kwargs, train_in_process, tmp_path):
    kwargs = tiny_kwargs("sd2", max_train_steps=2, checkpointing_steps=1)
    trainer, result = train_in_process(kwargs)
    assert trainer.base.family == "sd2" and result.global_step == 2
    for checkpoint in result.checkpoints:  # nothing family-specific is recorded: older checkpoints resume as they are
        state = (checkpoint / "trainer_state.json").read_text()
        assert "family" not in state and '"sd"' not in state
    index = json.loads((result.output_dir / "model_index.json").read_text())
    assert index["family"] == "sd2"
    assert resolve_base_model(str(result.output_dir)).family == "sd2"
    steps = []

    class Steps:
        def on_step_end(self, trainer, step, logs):
            steps.append(step)

    _, again = train_in_process({**kwargs, "max_train_steps": 3, "resume_from_checkpoint": "latest"}, [Steps()])
    assert steps == [3] and again.global_step == 3  # resumed at step 2, not retrained from scratch
