"""DreamBooth quality metrics: the similarity math on constructed cases, CLIP-T without the identifier, prior drift,
best-step selection on planted checkpoints, and the metrics.jsonl round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hfvision.evaluation import (
    append_metrics,
    cosine_matrix,
    evaluate_pipeline,
    generate_images,
    mean_paired_similarity,
    mean_pairwise_similarity,
    read_metrics,
    select_best,
    strip_identifier,
)

GENERATE = dict(num_inference_steps=2, guidance_scale=7.5, height=64, width=64)


def test_similarity_math_on_constructed_embeddings():
    e = torch.eye(4)
    assert torch.equal(cosine_matrix(e, e), torch.eye(4, dtype=torch.float64))  # orthogonal -> 0, self -> 1
    assert mean_pairwise_similarity(e[:1], e[1:]) == 0.0
    assert mean_paired_similarity(e, e) == 1.0
    # known cosines, any scale: (1,0)·(1,1) = 1/sqrt(2); (1,0)·(-3,0) = -1
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0], [-3.0, 0.0]])
    assert cosine_matrix(a, b)[0].tolist() == pytest.approx([1 / math.sqrt(2), -1.0], abs=1e-12)
    assert mean_pairwise_similarity(a, b) == pytest.approx((1 / math.sqrt(2) - 1) / 2, abs=1e-12)
    # paired: row i against row i only (the off-diagonal 1/sqrt(2) pairs do not count)
    x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert mean_paired_similarity(x, y) == pytest.approx(0.5, abs=1e-12)
    assert mean_pairwise_similarity(x, y) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="equal shapes"):
        mean_paired_similarity(x, y[:1])


def test_identical_images_score_one_and_different_images_less(clip_embedder, dino_embedder):
    from hfvision.testing import sample_image

    cat, rocket = sample_image("chelsea").resize((96, 64)), sample_image("rocket").resize((64, 96))
    for embedder in (clip_embedder, dino_embedder):
        same = embedder.embed_images([cat, cat])
        assert same.norm(dim=-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
        assert mean_pairwise_similarity(same[:1], same[1:]) == pytest.approx(1.0, abs=1e-6)
        other = embedder.embed_images([rocket])
        assert mean_pairwise_similarity(same[:1], other) < 1 - 1e-3
    # batching does not change embeddings
    together = clip_embedder.embed_images([cat, rocket])
    clip_embedder.batch_size = 1
    try:
        assert torch.allclose(clip_embedder.embed_images([cat, rocket]), together, atol=1e-6)
    finally:
        clip_embedder.batch_size = 16


@pytest.mark.parametrize(
    "prompt, identifiers, class_noun, expected",
    [
        ("a photo of sks dog", "sks", None, "a photo of dog"),
        ("sks dog, on the beach", ["sks"], None, "dog, on the beach"),
        ("a {token} {class} swimming", "sks", "dog", "a dog swimming"),
        ("a photo of ohwx man and zwx woman", ["ohwx", "zwx"], None, "a photo of man and woman"),
        ("asks sksa sks-dog", "sks", None, "asks sksa -dog"),  # whole words only
        ("a photo of a dog", None, None, "a photo of a dog"),
    ],
)
def test_strip_identifier(prompt, identifiers, class_noun, expected):
    assert strip_identifier(prompt, identifiers, class_noun) == expected


def test_clip_t_scores_the_prompt_without_the_token(checkpoints, clip_embedder, dino_embedder):
    from hfvision.testing import sample_image

    pipe = checkpoints[100]
    result = evaluate_pipeline(
        pipe,
        [sample_image("chelsea")],
        ["a photo of {token} cat"],
        identifier="sks",
        clip=clip_embedder,
        dino=dino_embedder,
        **GENERATE,
    )
    assert result.per_prompt[0]["clip_text"] == "a photo of cat"
    image_embeds = clip_embedder.embed_images(result.images[0])
    stripped = float(cosine_matrix(image_embeds, clip_embedder.embed_texts(["a photo of cat"])).mean())
    with_token = float(cosine_matrix(image_embeds, clip_embedder.embed_texts(["a photo of sks cat"])).mean())
    assert result.metrics["clip_t"] == pytest.approx(stripped, abs=1e-6)
    assert abs(stripped - with_token) > 1e-4
    # the image was generated from the expanded prompt
    want = generate_images(pipe, ["a photo of sks cat"], 0, **GENERATE)[0][0]
    np.testing.assert_array_equal(np.asarray(result.images[0][0]), np.asarray(want))


def test_best_step_is_the_planted_checkpoint(checkpoints, clip_embedder, dino_embedder, tmp_path):
    """Checkpoint 200's outputs are the instance images: CLIP-I and DINO are 1 there, and select_best finds it.
    Drift against checkpoint 100 as the base is exactly 0 for checkpoint 100 and positive for the others."""
    prompts, class_prompts = ["a photo of {token} dog"], ["a photo of dog"]
    planted = generate_images(checkpoints[200], ["a photo of sks dog"], 0, num_images_per_prompt=2, **GENERATE)[0]
    base_images = generate_images(checkpoints[100], class_prompts, 0, num_images_per_prompt=2, **GENERATE)
    path = tmp_path / "run" / "metrics.jsonl"
    table = {}
    for step, pipe in checkpoints.items():
        result = evaluate_pipeline(
            pipe,
            planted,
            prompts,
            identifier="sks",
            class_prompts=class_prompts,
            base_class_images=base_images,
            clip=clip_embedder,
            dino=dino_embedder,
            num_images_per_prompt=2,
            **GENERATE,
        )
        table[step] = append_metrics(path, step, result.metrics)
    assert table[200]["clip_i"] < 1.0 + 1e-6 and table[200]["dino"] < 1.0 + 1e-6
    # every generated image is one of the two instance images: mean over the 2x2 pairs = (2 * 1 + 2 * s) / 4
    off = mean_pairwise_similarity(*(dino_embedder.embed_images([img]) for img in planted))
    assert table[200]["dino"] == pytest.approx((2 + 2 * off) / 4, abs=1e-6)
    for other in (100, 300):
        assert table[other]["clip_i"] < table[200]["clip_i"] - 1e-4
        assert table[other]["dino"] < table[200]["dino"] - 1e-4
    assert table[100]["drift"] == pytest.approx(0.0, abs=1e-6)
    assert table[200]["drift"] > 1e-4 and table[300]["drift"] > 1e-4
    assert select_best(table, by="clip_i") == 200
    assert select_best(path, by="dino") == 200
    assert select_best(path, by="drift") == 100
    assert select_best(table, by="clip_t") == max(table, key=lambda s: table[s]["clip_t"])


def test_drift_renders_the_base_with_the_same_seeds(checkpoints, clip_embedder, dino_embedder):
    from hfvision.testing import sample_image

    kwargs = dict(class_prompts=["a photo of dog"], clip=clip_embedder, dino=dino_embedder, **GENERATE)
    same = evaluate_pipeline(
        checkpoints[300],
        [sample_image("chelsea")],
        ["{token} dog"],
        identifier="sks",
        base_pipeline=checkpoints[300],
        **kwargs,
    )
    assert same.metrics["drift"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_array_equal(np.asarray(same.class_images[0][0]), np.asarray(same.base_class_images[0][0]))
    with pytest.raises(ValueError, match=r"rows of \[1\] images for 1 class prompts x num_images_per_prompt=2"):
        evaluate_pipeline(
            checkpoints[300],
            [sample_image("chelsea")],
            ["x"],
            num_images_per_prompt=2,
            base_class_images=same.base_class_images,
            **kwargs,
        )
    with pytest.raises(ValueError, match=r"the prompts use \{class\} but the model records no class_noun"):
        evaluate_pipeline(
            checkpoints[300],
            [sample_image("chelsea")],
            ["{token} {class}"],
            identifier="sks",
            clip=clip_embedder,
            dino=dino_embedder,
        )
    with pytest.raises(ValueError, match="base_pipeline or base_class_images"):
        evaluate_pipeline(
            checkpoints[300],
            [sample_image("chelsea")],
            ["x"],
            class_prompts=["a dog"],
            clip=clip_embedder,
            dino=dino_embedder,
        )


def test_class_prompts_expand_like_prompts(checkpoints, clip_embedder, dino_embedder):
    """``{class}`` in a class prompt is the class noun (rendered as written out), and a placeholder without a value
    is refused before any generation."""
    from hfvision.testing import sample_image

    pipe = checkpoints[300]
    written_out = generate_images(pipe, ["a photo of dog"], 0, **GENERATE)
    common = dict(clip=clip_embedder, dino=dino_embedder, **GENERATE)
    result = evaluate_pipeline(
        pipe,
        [sample_image("chelsea")],
        ["{token} {class}"],
        identifier="sks",
        class_noun="dog",
        class_prompts=["a photo of {class}"],
        base_class_images=written_out,
        **common,
    )
    np.testing.assert_array_equal(np.asarray(result.class_images[0][0]), np.asarray(written_out[0][0]))
    assert result.metrics["drift"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"the class prompts use \{class\} but the model records no class_noun"):
        evaluate_pipeline(
            pipe, [sample_image("chelsea")], ["x"], class_prompts=["a {class}"], base_pipeline=pipe, **common
        )


def test_metrics_jsonl_round_trip(tmp_path):
    path = tmp_path / "metrics.jsonl"
    written = [
        append_metrics(path, 100, {"clip_i": 0.1 + 0.2, "dino": 1 / 3}, loss=0.25),
        append_metrics(path, 200, {"clip_i": 0.7, "dino": 2 / 3, "drift": 1e-17}),
    ]
    assert read_metrics(path) == {100: written[0], 200: written[1]}
    assert read_metrics(path)[100]["clip_i"] == 0.1 + 0.2  # floats survive bit for bit
    # a resumed run re-validating step 200 appends; the later line wins
    again = append_metrics(path, 200, {"clip_i": 0.5})
    assert read_metrics(path)[200] == again
    # a torn last line (crash mid-write) is skipped; a bad line in the middle is an error naming it
    with open(path, "a") as f:
        f.write('{"step": 300, "clip')
    assert sorted(read_metrics(path)) == [100, 200]
    with open(path, "a") as f:
        f.write("\n" + json.dumps({"step": 400, "clip_i": 0.9}) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:4 "):
        read_metrics(path)


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, 100, {"dino": 0.5})
    with open(path, "a") as f:
        f.write('{"step": 200, "di')  # the crash
    record = append_metrics(path, 300, {"dino": 0.7})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"step": 200, "di' and json.loads(lines[2]) == record  # the new record is whole
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 "):
        read_metrics(path)  # the torn line is now in the middle: named, not silently glued to the next record


def test_non_finite_metrics_are_written_as_null(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = append_metrics(path, 100, {"dino": float("nan"), "clip_i": 0.5}, loss=float("inf"))
    assert first == {"step": 100, "dino": None, "clip_i": 0.5, "loss": None}
    append_metrics(path, 200, {"dino": 0.25, "drift": float("-inf")})

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant} in metrics.jsonl")

    lines = [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]
    assert lines[1] == {"step": 200, "dino": 0.25, "drift": None}
    assert read_metrics(path)[100] == first
    assert select_best(path, by="dino") == 200  # null skipped
    with pytest.raises(ValueError, match="no step has a 'drift'"):
        select_best(path, by="drift")


def test_select_best_rules():
    table = {300: {"dino": 0.5}, 100: {"dino": 0.5}, 200: {"dino": float("nan")}, 400: {"clip_i": 0.9}}
    assert select_best(table, by="dino") == 100  # tie -> earliest step; NaN and missing skipped
    with pytest.raises(ValueError, match="no step has a 'drift'"):
        select_best(table, by="drift")
    with pytest.raises(ValueError, match="by='fid' is not a metric; choose one of clip_i, dino, clip_t, drift"):
        select_best(table, by="fid")


def test_scoring_given_images_matches_evaluate_pipeline(checkpoints, clip_embedder, dino_embedder):
    """A trainer scores its own validation images against embeddings of the photos computed once."""
    from hfvision.evaluation import SubjectReference, drift_score, score_images
    from hfvision.testing import sample_image

    photos = [sample_image("chelsea"), sample_image("astronaut")]
    prompts = ["a photo of {token} cat", "{token} cat in the snow"]
    result = evaluate_pipeline(
        checkpoints[100],
        photos,
        prompts,
        identifier="sks",
        clip=clip_embedder,
        dino=dino_embedder,
        class_prompts=["a cat"],
        base_pipeline=checkpoints[300],
        **GENERATE,
    )
    reference = SubjectReference.from_images(photos, clip_embedder, dino_embedder)
    metrics, rows = score_images(result.images, prompts, reference, clip_embedder, dino_embedder, identifier="sks")
    assert rows == result.per_prompt
    assert metrics == {k: result.metrics[k] for k in ("clip_i", "dino", "clip_t")}
    assert drift_score(result.class_images, result.base_class_images, dino_embedder) == result.metrics["drift"]
    again = evaluate_pipeline(
        checkpoints[100], reference, prompts, identifier="sks", clip=clip_embedder, dino=dino_embedder, **GENERATE
    )
    assert again.metrics == metrics
    with pytest.raises(ValueError, match="1 rows of images for 2 prompts"):
        score_images(result.images[:1], prompts, reference, clip_embedder, dino_embedder)


def test_embedders_load_safetensors_and_refuse_pickles(embedder_dirs, dino_embedder, tmp_path):
    from hfvision.evaluation import ClipEmbedder, DinoEmbedder
    from hfvision.testing import sample_image, tiny_dino_embedder

    image = [sample_image("coffee")]
    loaded = DinoEmbedder.from_pretrained(embedder_dirs[1])
    assert torch.equal(loaded.embed_images(image), dino_embedder.embed_images(image))
    assert type(ClipEmbedder.from_pretrained(embedder_dirs[0]).model).__name__ == "CLIPModel"
    model, processor = tiny_dino_embedder()
    (tmp_path / "pickled").mkdir()
    model.config.save_pretrained(tmp_path / "pickled")  # transformers 5 writes only safetensors: pickle by hand
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    processor.save_pretrained(tmp_path / "pickled")
    with pytest.raises(ValueError, match="pickled: weights are pickle files only .* allow_pickle=True"):
        DinoEmbedder.from_pretrained(tmp_path / "pickled")
    trusted = DinoEmbedder.from_pretrained(tmp_path / "pickled", allow_pickle=True)
    assert torch.equal(trusted.embed_images(image), dino_embedder.embed_images(image))
    with pytest.raises(ValueError, match="loads as ViTModel, not a CLIP-style model"):
        ClipEmbedder.from_pretrained(embedder_dirs[1])


def test_dreambooth_pipeline_supplies_its_token_and_class(checkpoints, clip_embedder, dino_embedder):
    from hfvision.pipelines.dreambooth import DreamBoothPipeline
    from hfvision.testing import sample_image

    pipe = DreamBoothPipeline.from_components(checkpoints[100], instance_token="zwx", class_noun="dog")
    pipe.set_progress_bar_config(disable=True)
    result = evaluate_pipeline(
        pipe,
        [sample_image("chelsea")],
        ["a photo of {token} {class}", "zwx dog swimming"],
        clip=clip_embedder,
        dino=dino_embedder,
        **GENERATE,
    )
    assert [r["clip_text"] for r in result.per_prompt] == ["a photo of dog", "dog swimming"]
    # generated from "a photo of zwx dog": the same image as the plain pipeline with the prompt written out
    want = generate_images(checkpoints[100], ["a photo of zwx dog"], 0, **GENERATE)[0][0]
    np.testing.assert_array_equal(np.asarray(result.images[0][0]), np.asarray(want))


def test_tiny_clip_text_tower_is_the_tiny_pipelines_text_encoder():
    """The metric tests' CLIP text tower is built from the same config as the tiny pipelines' text encoder, so the
    two cannot drift apart."""
    from hfvision.testing import tiny_clip_embedder
    from hfvision.testing.diffusion import tiny_text_config

    model, processor = tiny_clip_embedder()
    assert model.config.text_config.to_diff_dict() == tiny_text_config().to_diff_dict()
    assert processor.tokenizer.model_max_length == model.config.text_config.max_position_embeddings
