"""Quality metrics inside DreamBooth training: scores at each validation (metrics.jsonl, trackers, model card,
report.html, TensorBoard grids) and ``--select_best_by`` keeping the best step's weights as the output."""

from __future__ import annotations

import json
import math

import pytest
import torch


@pytest.fixture(scope="session")
def embedder_dirs(tmp_path_factory):
    from hfvision.testing import save_tiny_clip_embedder, save_tiny_dino_embedder

    root = tmp_path_factory.mktemp("embedders")
    return str(save_tiny_clip_embedder(root / "clip")), str(save_tiny_dino_embedder(root / "dino"))


def _quality_kwargs(tiny_kwargs, embedder_dirs, **overrides):
    kwargs = dict(
        resolution=32,
        quality_metrics=True,
        quality_clip_model=embedder_dirs[0],
        quality_dino_model=embedder_dirs[1],
        validation_prompt=["a photo of {token} person on a beach"],
        num_validation_images=1,
        validation_steps=2,
        validation_inference_steps=2,
        max_train_steps=4,
    )
    return tiny_kwargs(**{**kwargs, **overrides})


def test_metrics_report_card_and_tensorboard_from_a_real_run(tiny_kwargs, embedder_dirs, train_in_process):
    from hfvision.evaluation import ClipEmbedder, DinoEmbedder, read_metrics
    from hfvision.evaluation.dreambooth import SubjectReference, score_images
    from hfvision.evaluation.report import read_samples

    kwargs = _quality_kwargs(tiny_kwargs, embedder_dirs, report_to="tensorboard")
    trainer, result = train_in_process(kwargs)
    out = result.output_dir
    metrics = read_metrics(out / "metrics.jsonl")
    assert sorted(metrics) == [2, 4]
    for record in metrics.values():
        for name in ("clip_i", "dino", "clip_t", "drift"):  # drift: prior preservation is on
            assert math.isfinite(record[name]) and -1.0 <= record[name] <= 1.0 + 1e-6
        assert record["loss"] > 0
    # the step-4 scores are those of the saved step-4 samples against the instance photos
    prompts, images = read_samples(out / "samples")
    clip, dino = ClipEmbedder.from_pretrained(embedder_dirs[0]), DinoEmbedder.from_pretrained(embedder_dirs[1])
    from PIL import Image

    photos = [Image.fromarray(r.pixels) for r in trainer.instance_records]
    reference = SubjectReference.from_images(photos, clip, dino)
    again, _ = score_images(images[4], prompts, reference, clip, dino, "sks", "person")
    for name in ("clip_i", "dino", "clip_t"):
        assert again[name] == pytest.approx(metrics[4][name], abs=1e-5)
    card = (out / "README.md").read_text()
    assert "## Quality" in card and "| 4 |" in card.replace("**", "")
    html = (out / "report.html").read_text()
    assert "<svg" in html and html.count("data:image/png;base64") >= 2  # grid thumbnails of steps 2 and 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(next((out / "logs").rglob("events.out.tfevents.*")).parent), size_guidance={"images": 0}
    )
    events.Reload()
    assert [e.step for e in events.Images("validation/grid")] == [2, 4]
    assert [round(e.value, 6) for e in events.Scalars("quality/clip_i")] == [
        round(metrics[s]["clip_i"], 6) for s in (2, 4)
    ]


def test_select_best_keeps_the_planted_best_steps_weights(
    tiny_kwargs, embedder_dirs, train_in_process, monkeypatch, load_weights, assert_bit_identical
):
    """Scores are planted (best clip_i at step 4 of 2, 4, 6): the output holds step 4's weights, not step 6's."""
    import hfvision.evaluation.tracking as tracking

    planted = iter([0.1, 0.9, 0.3])

    def fake_score_images(*args, **kwargs):
        return {"clip_i": next(planted), "dino": 0.5, "clip_t": 0.2}, None

    monkeypatch.setattr(tracking, "score_images", fake_score_images)
    kwargs = _quality_kwargs(
        tiny_kwargs,
        embedder_dirs,
        max_train_steps=6,
        checkpointing_steps=2,
        prior=False,
        select_best_by="clip_i",
    )
    trainer, result = train_in_process(kwargs)
    out = result.output_dir
    saved = load_weights(out / "unet")
    at_4, at_6 = load_weights(out / "checkpoint-4" / "unet"), load_weights(out / "checkpoint-6" / "unet")
    assert_bit_identical(saved, at_4)
    assert any(not torch.equal(at_4[k], at_6[k]) for k in at_4)  # the last step really differs
    assert trainer.quality.best_step == 4
    assert "step 4's, the best by clip_i" in (out / "README.md").read_text()
    assert not (out / ".best-weights").exists()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]


def test_quality_flags_are_checked():
    from hfvision.training import DreamBoothConfig

    base = dict(pretrained_model_name_or_path="sd15", instance_data_dir="photos")
    with pytest.raises(ValueError, match="select_best_by needs --quality_metrics"):
        DreamBoothConfig(**base, select_best_by="dino", validation_prompt="a photo of {token}")
    with pytest.raises(ValueError, match="add --validation_prompt"):
        DreamBoothConfig(**base, quality_metrics=True)
    with pytest.raises(ValueError, match="drift"):
        DreamBoothConfig(**base, quality_metrics=True, validation_prompt="x", select_best_by="drift")
    config = DreamBoothConfig(**base, quality_metrics=True, validation_prompt="x")
    assert (config.quality_clip_model, config.quality_dino_model) == (
        "openai/clip-vit-base-patch32",
        "facebook/dino-vits16",
    )


@pytest.mark.slow
def test_quality_metrics_survive_a_kill_and_resume(
    tiny_kwargs, embedder_dirs, run_training, tmp_path, load_weights, assert_bit_identical
):
    """Killed after step 3 (checkpoint and validation at 2), resumed: metrics.jsonl holds steps 2 and 4 once each,
    with the same numbers as an uninterrupted run (drift reads the base class images back), and the kept weights
    equal the uninterrupted run's."""
    import signal

    from hfvision.evaluation import read_metrics

    kwargs = _quality_kwargs(tiny_kwargs, embedder_dirs, checkpointing_steps=2, select_best_by="dino")
    run_training({**kwargs, "output_dir": str(tmp_path / "straight")})
    killed = {**kwargs, "output_dir": str(tmp_path / "killed")}
    code, _, _ = run_training(killed, kill_at=3)
    assert code == -signal.SIGKILL
    run_training({**killed, "resume_from_checkpoint": "latest"})
    straight, resumed = (
        read_metrics(tmp_path / "straight" / "metrics.jsonl"),
        read_metrics(tmp_path / "killed" / "metrics.jsonl"),
    )
    assert sorted(resumed) == [2, 4]
    for step in (2, 4):
        for name in ("clip_i", "dino", "clip_t", "drift"):
            assert resumed[step][name] == straight[step][name]
    assert_bit_identical(load_weights(tmp_path / "straight" / "unet"), load_weights(tmp_path / "killed" / "unet"))
    assert "<svg" in (tmp_path / "killed" / "report.html").read_text()
