"""QualityTracker: scores validations of a run, keeps the best step, and resumes exactly (drift references read back
from PNG, later records dropped)."""

from __future__ import annotations

import pytest

from hfvision.evaluation import QualityTracker, generate_images, read_metrics

GENERATE = dict(num_inference_steps=2, guidance_scale=7.5, height=64, width=64)
PROMPTS, CLASS_PROMPTS = ["a photo of {token} dog"], ["a photo of dog"]


def validation_images(pipe):
    return generate_images(pipe, ["a photo of sks dog"], 0, **GENERATE)


def test_tracker_best_step_and_exact_resume(checkpoints, clip_embedder, dino_embedder, tmp_path):
    planted = validation_images(checkpoints[200])[0]  # step 200's validation output is the subject
    kwargs = dict(
        clip=clip_embedder,
        dino=dino_embedder,
        class_prompts=CLASS_PROMPTS,
        identifier="sks",
        select_best_by="dino",
        **GENERATE,
    )
    tracker = QualityTracker(tmp_path, planted, PROMPTS, **kwargs)
    tracker.prepare(checkpoints[100])  # the "base" weights
    assert sorted(p.name for p in (tmp_path / "quality" / "base_class").iterdir()) == ["0-0.png"]
    flags, first = [], {}
    for step, pipe in checkpoints.items():
        metrics, is_best = tracker.score(step, validation_images(pipe), pipeline=pipe, loss=step / 1000)
        flags.append(is_best)
        first[step] = metrics
    assert flags == [True, True, False] and tracker.best_step == 200
    assert first[100]["drift"] == pytest.approx(0.0, abs=1e-6) and first[300]["drift"] > 1e-4
    assert read_metrics(tmp_path / "metrics.jsonl")[300] == {"step": 300, **first[300], "loss": 0.3}

    # the process dies after step 300's record; the run resumes from its step-200 checkpoint
    resumed = QualityTracker(tmp_path, planted, PROMPTS, resume_step=200, **kwargs)
    assert sorted(read_metrics(tmp_path / "metrics.jsonl")) == [100, 200]
    resumed.prepare(None)  # base weights are gone; the saved references are read back
    assert resumed.best_step == 200
    metrics, is_best = resumed.score(300, validation_images(checkpoints[300]), pipeline=checkpoints[300], loss=0.3)
    assert metrics == first[300] and not is_best  # bit-identical to the uninterrupted run

    # a fresh run in the same folder starts a new file and renders new references
    fresh = QualityTracker(tmp_path, planted, PROMPTS, **kwargs)
    assert (tmp_path / "metrics.jsonl.prev").is_file() and not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="pass the base pipeline to prepare"):
        fresh.prepare(None)
    with pytest.raises(RuntimeError, match=r"call prepare\(base_pipeline\) before the first score"):
        fresh.score(100, validation_images(checkpoints[100]), pipeline=checkpoints[100])


def test_tracker_argument_errors(clip_embedder, dino_embedder, tmp_path):
    from hfvision.testing import sample_image

    photos = [sample_image("chelsea")]
    with pytest.raises(ValueError, match="select_best_by='drift' needs class prompts"):
        QualityTracker(tmp_path, photos, PROMPTS, clip=clip_embedder, dino=dino_embedder, select_best_by="drift")
    with pytest.raises(ValueError, match="select_best_by='fid' is not one of clip_i, dino, clip_t, drift"):
        QualityTracker(tmp_path, photos, PROMPTS, clip=clip_embedder, dino=dino_embedder, select_best_by="fid")
    no_drift = QualityTracker(tmp_path, photos, PROMPTS, clip=clip_embedder, dino=dino_embedder)
    no_drift.prepare()  # nothing to render without class prompts
    assert no_drift.best_step is None
