"""``hfvision eval dreambooth``: the quality table for a saved pipeline, end to end with tiny SD + tiny embedders,
and argument errors reported in one line (exit 2) before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hfvision.cli.main import main


@pytest.fixture(scope="module")
def eval_inputs(tiny_model_dir, embedder_dirs, tmp_path_factory):
    """A saved tiny SD1, instance photos that ARE its outputs for the first prompt (seed 0), a prompts file."""
    import torch

    from hfvision.models import load_pipeline

    model = tiny_model_dir("sd1")
    root = tmp_path_factory.mktemp("eval-cli")
    photos = root / "photos"
    photos.mkdir()
    pipe = load_pipeline(str(model))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a photo of sks dog", num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(0)
    )
    out.images[0].save(photos / "0.png")
    prompts = root / "prompts.txt"
    prompts.write_text("# evaluation prompts\na photo of {token} dog\n\n{token} dog on the beach\n")
    clip_dir, dino_dir = embedder_dirs
    return {"model": model, "photos": photos, "prompts": prompts, "clip": clip_dir, "dino": dino_dir, "root": root}


def _args(inputs, *extra):
    return [
        "eval",
        "dreambooth",
        str(inputs["model"]),
        "--instance-data-dir",
        str(inputs["photos"]),
        "--prompts",
        str(inputs["prompts"]),
        "--clip-model",
        str(inputs["clip"]),
        "--dino-model",
        str(inputs["dino"]),
        "--num-images-per-prompt",
        "1",
        "--num-inference-steps",
        "2",
        "--height",
        "64",
        "--width",
        "64",
        "--identifier",
        "sks",
        *extra,
    ]


def test_eval_dreambooth_table_and_json(eval_inputs, capsys, clip_embedder):
    out_json = eval_inputs["root"] / "eval.json"
    saved = eval_inputs["root"] / "generated"
    argv = _args(
        eval_inputs,
        "--output",
        str(out_json),
        "--class-prompt",
        "a photo of dog",
        "--base-model",
        str(eval_inputs["model"]),
        "--save-images",
        str(saved),
    )
    assert main(argv) == 0
    report = json.loads(out_json.read_text())
    metrics, rows = report["metrics"], report["per_prompt"]
    # prompt 0 with seed 0 reproduces the instance photo exactly: CLIP-I and DINO are 1 for that row
    assert rows[0]["clip_i"] == pytest.approx(1.0, abs=1e-6) and rows[0]["dino"] == pytest.approx(1.0, abs=1e-6)
    assert rows[1]["clip_i"] < 1 - 1e-4
    assert [r["clip_text"] for r in rows] == ["a photo of dog", "dog on the beach"]
    assert metrics["clip_i"] == pytest.approx((rows[0]["clip_i"] + rows[1]["clip_i"]) / 2, abs=1e-9)
    assert metrics["drift"] == pytest.approx(0.0, abs=1e-6)  # the base is the model itself
    # the saved images are what was scored; CLIP-T recomputed from them with the (reloaded) tiny CLIP matches
    from PIL import Image

    from hfvision.evaluation import cosine_matrix

    image = Image.open(saved / "1-0.png")
    clip_t = float(cosine_matrix(clip_embedder.embed_images([image]), clip_embedder.embed_texts(["dog on the beach"])))
    assert rows[1]["clip_t"] == pytest.approx(clip_t, abs=1e-6)
    printed = capsys.readouterr().out
    assert f"{metrics['dino']:.4f}" in printed and "drift" in printed and "dog on the beach" in printed


@pytest.mark.parametrize(
    "change, message",
    [
        (("--instance-data-dir", "/nonexistent/photos"), "--instance-data-dir /nonexistent/photos is not a folder"),
        (("--prompts", "/nonexistent.txt"), "--prompts /nonexistent.txt is not a file"),
        (("--class-prompt", "a dog"), "--class-prompt needs --base-model"),
        (("--clip-model", "./no-such-clip"), "--clip-model ./no-such-clip is not a model folder"),
        (("--height", "60"), "--height=60 must be a positive multiple of 8; try 56"),
        (("--output", "eval.txt"), "--output eval.txt must end in .json"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_loading(eval_inputs, capsys, change, message):
    argv = _args(eval_inputs, "--output", str(eval_inputs["root"] / "x.json"))
    flag, value = change
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hfvision eval dreambooth: error: ") and message in err and "\n" not in err


def test_errors_load_no_model_libraries(eval_inputs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import sys; from hfvision.cli.main import main; "
        f"rc = main({_args(eval_inputs, '--instance-data-dir', str(empty))!r}); "
        "print(rc, sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split("\n")[0] == "2 []"
    assert f"--instance-data-dir {empty} holds no images" in proc.stderr
    np.testing.assert_equal(proc.stderr.count("\n"), 1)


def test_flags_are_dashed_with_underscore_aliases():
    """Like the rest of the CLI the flags use dashes; diffusers' underscore spellings parse to the same values."""
    import argparse

    from hfvision.cli import eval as eval_cli

    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    common = ["eval", "dreambooth", "m"]
    dashed = parser.parse_args(
        [*common, "--instance-data-dir", "d", "--prompts", "p", "--class-prompt", "a", "--base-model", "b"]
        + ["--num-images-per-prompt", "2", "--allow-pickle", "--save-images", "s", "--clip-model", "c"]
    )
    underscored = parser.parse_args(
        [*common, "--instance_data_dir", "d", "--prompts", "p", "--class_prompt", "a", "--base_model", "b"]
        + ["--num_images_per_prompt", "2", "--allow_pickle", "--save_images", "s", "--clip_model", "c"]
    )
    assert vars(dashed) == vars(underscored)
    assert dashed.instance_data_dir == "d" and dashed.class_prompt == ["a"] and dashed.allow_pickle is True
    mixed = parser.parse_args(
        [*common, "--instance-data-dir", "d", "--prompts", "p", "--class-prompt", "a"] + ["--class_prompt", "b"]
    )
    assert mixed.class_prompt == ["a", "b"]  # both spellings append to one list
    report = parser.parse_args(["eval", "report", "run", "--best-by", "dino", "--samples_dir", "s"])
    assert (report.best_by, report.samples_dir) == ("dino", "s")
