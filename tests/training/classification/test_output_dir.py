"""No lost work: a classifier run never replaces another run's model or checkpoints unless told to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfvision.training.classification import ImageClassificationTrainer, write_synthetic_imagefolder
from hfvision.training.classification.saving import (
    RUN_FILE,
    read_run_file,
    resolve_resume_checkpoint,
    run_identity,
    write_run_file,
)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, make_config):
    """Run A: one epoch of the tiny ViT with checkpoints, then its pipeline repo, in ``out``."""
    root = tmp_path_factory.mktemp("no-lost-work")
    data = write_synthetic_imagefolder(root / "data", per_class=4, seed=2)

    def config(output_dir=root / "out", **overrides):
        values = dict(num_train_epochs=1, per_device_train_batch_size=4, eval_strategy="no", validation_size=2)
        return make_config(tiny_model_dir("vit"), data, output_dir, **{**values, **overrides})

    trainer = ImageClassificationTrainer(config())
    trainer.train()
    trainer.save_pipeline()
    return root / "out", config


def test_another_run_into_the_same_output_dir_is_refused_and_changes_nothing(finished_run, monkeypatch, capsys):
    from hfvision.cli.main import main
    from hfvision.training.classification import trainer as trainer_module

    out, config = finished_run
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"] and (out / "model.safetensors").is_file()
    before = _files(out)

    def no_loading(*args, **kwargs):
        raise AssertionError("the output directory must be checked before any data or model is loaded")

    monkeypatch.setattr(trainer_module, "load_classification_data", no_loading)
    monkeypatch.setattr(trainer_module, "load_classifier", no_loading)
    with pytest.raises(FileExistsError) as refused:
        ImageClassificationTrainer(config(seed=1))
    message = str(refused.value)
    assert "\n" not in message and "checkpoint-2, model.safetensors" in message
    assert "resume_from_checkpoint='latest' (--resume_from_checkpoint latest)" in message
    assert "overwrite_output_dir=True (--overwrite_output_dir)" in message

    args = config(seed=1)
    argv = [
        "train",
        "classifier",
        "--model",
        args.model_name_or_path,
        "--data",
        args.data,
        "--output_dir",
        str(out),
        "--seed",
        "1",
        "--use_cpu",
        "--report_to",
        "none",
    ]
    assert main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--resume_from_checkpoint" in error and "--overwrite_output_dir" in error
    monkeypatch.undo()

    # resuming "latest" with another run's options: checkpoint-2 is not this run's, so it is not picked
    with pytest.raises(ValueError, match=r"belongs to another run \(seed=0 \(now 1\)\)") as other_run:
        ImageClassificationTrainer(config(seed=1, resume_from_checkpoint="latest")).train()
    assert "\n" not in str(other_run.value) and "overwrite_output_dir" in str(other_run.value)
    assert _files(out) == before  # byte-identical: nothing written, moved or removed


def test_overwrite_output_dir_replaces_the_run_and_its_checkpoints(finished_run, tmp_path):
    import shutil

    out, config = finished_run
    replaced = tmp_path / "out"
    shutil.copytree(out, replaced)
    old = read_run_file(replaced / "checkpoint-2")
    stale = replaced / "checkpoint-9"  # a checkpoint `latest` would pick if it survived
    shutil.copytree(replaced / "checkpoint-2", stale)
    before = _files(replaced)

    new_config = config(seed=1, overwrite_output_dir=True, output_dir=str(replaced))
    trainer = ImageClassificationTrainer(new_config)
    trainer.train()
    trainer.save_pipeline()
    assert [p.name for p in replaced.glob("checkpoint-*")] == ["checkpoint-2"]  # the new run's only
    new = read_run_file(replaced / "checkpoint-2")
    assert new["run_id"] == read_run_file(replaced)["run_id"] == run_identity(new_config)["run_id"] != old["run_id"]
    assert new["fields"]["seed"] == 1 and old["fields"]["seed"] == 0
    assert _files(replaced)["model.safetensors"] != before["model.safetensors"]


def test_latest_picks_the_newest_checkpoint_of_this_run(tmp_path, make_config, tiny_model_dir, monkeypatch):
    (tmp_path / "data").mkdir()

    def config(**overrides):
        return make_config(tiny_model_dir("vit"), tmp_path / "data", tmp_path / "out", **overrides)

    mine, theirs = run_identity(config()), run_identity(config(seed=7))
    for step, identity in ((2, mine), (4, mine), (6, theirs), (10, None)):
        (tmp_path / "out" / f"checkpoint-{step}").mkdir(parents=True)
        if identity is not None:
            write_run_file(tmp_path / "out" / f"checkpoint-{step}", identity)
    # checkpoint-10 has no run file (written before hfvision recorded runs): taken as this run's
    assert resolve_resume_checkpoint(config(), mine, True) == str(tmp_path / "out" / "checkpoint-10")
    (tmp_path / "out" / "checkpoint-10" / RUN_FILE).write_text(json.dumps(theirs))
    assert resolve_resume_checkpoint(config(), mine, True) == str(tmp_path / "out" / "checkpoint-4")
    stranger = config(seed=8)
    with pytest.raises(ValueError, match=r"every checkpoint in .* \(checkpoint-10, \.\.\.\) belongs to another run"):
        resolve_resume_checkpoint(stranger, run_identity(stranger), True)
    # the same folders named by a relative path are the same run
    monkeypatch.chdir(tmp_path)
    relative = make_config(tiny_model_dir("vit"), "data", tmp_path / "out")
    assert run_identity(relative) == mine != theirs
