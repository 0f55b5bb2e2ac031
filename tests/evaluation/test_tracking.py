"""QualityTracker: scores validations of a run, keeps the best step, and resumes exactly (drift references read back
from PNG, later records dropped)."""

from __future__ import annotations

import numpy as np
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
    assert sorted(p.name for p in (tmp_path / "quality" / "base_class").iterdir()) == ["0-0.png", "settings.json"]
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


def test_resume_after_a_crash_mid_write_keeps_the_file_readable(clip_embedder, dino_embedder, tmp_path):
    """The process dies while writing step 300's line; the run resumes from step 200 and validates 300 and 400."""
    from hfvision.evaluation import append_metrics
    from hfvision.testing import sample_image

    photos = [sample_image("chelsea")]
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, 100, {"dino": 0.5})
    append_metrics(path, 200, {"dino": 0.6})
    with open(path, "a") as f:
        f.write('{"step": 300, "di')
    tracker = QualityTracker(
        tmp_path, photos, PROMPTS, clip=clip_embedder, dino=dino_embedder, select_best_by="dino", resume_step=200
    )
    assert sorted(tracker.history) == [100, 200]
    scored = {step: tracker.score(step, [photos])[0] for step in (300, 400)}
    records = read_metrics(path)
    assert sorted(records) == [100, 200, 300, 400]
    assert {step: {k: records[step][k] for k in scored[step]} for step in scored} == scored
    assert len(path.read_text().splitlines()) == 4  # no torn fragment left anywhere in the file


def test_saved_base_class_images_are_reused_only_with_the_same_settings(
    checkpoints, clip_embedder, dino_embedder, tmp_path
):
    """A resumed run reads quality/base_class back only when its class prompts (``{class}`` expanded), seed, image
    count and call arguments are the ones they were rendered with; otherwise they are rendered again."""
    from hfvision.testing import sample_image

    photos = [sample_image("chelsea")]
    base = checkpoints[100]
    common = dict(clip=clip_embedder, dino=dino_embedder, class_noun="dog", **GENERATE)
    first = QualityTracker(tmp_path, photos, PROMPTS, class_prompts=["a photo of {class}"], **common)
    assert first.class_prompts == ["a photo of dog"]
    first.prepare(base)

    # same settings ("{class}" written out is the same prompt): read back without the base weights
    same = QualityTracker(tmp_path, photos, PROMPTS, class_prompts=CLASS_PROMPTS, resume_step=0, **common)
    same.prepare(None)
    assert [np.asarray(i).tolist() for i in same.base_class_images[0]] == [
        np.asarray(i).tolist() for i in first.base_class_images[0]
    ]

    for change in ({"seed": 1}, {"class_prompts": ["a photo of cat"]}, {"num_inference_steps": 3}):
        settings = {"class_prompts": CLASS_PROMPTS, **common, **change}
        other = QualityTracker(tmp_path, photos, PROMPTS, resume_step=0, **settings)
        with pytest.raises(ValueError, match="no base class images rendered with this run's class prompts"):
            other.prepare(None)
        other.prepare(base)  # rendered again, with this run's settings
        expected = generate_images(base, other.class_prompts, other.seed, **other.call_kwargs)
        assert np.array_equal(np.asarray(other.base_class_images[0][0]), np.asarray(expected[0][0]))
        reread = QualityTracker(tmp_path, photos, PROMPTS, resume_step=0, **settings)
        reread.prepare(None)  # and now they match
        assert np.array_equal(np.asarray(reread.base_class_images[0][0]), np.asarray(expected[0][0]))
