"""``--strict``: one spelling of "stop at the first unreadable image" on every command that reads images.

Without it, unreadable images are skipped with a warning and a count; with it the first one stops the run (exit 1,
one line naming the file) before anything is written. ``--bad_images error`` stays accepted where it existed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hfvision.cli.main import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An image folder with one good photo and one text file named .png (sorted after the good one)."""
    from hfvision.testing import sample_image

    root = tmp_path_factory.mktemp("strict")
    (root / "photos").mkdir()
    sample_image("astronaut").resize((64, 64)).save(root / "photos" / "a.png")
    (root / "photos" / "b.png").write_text("this is not an image\n")
    for label in ("female", "male"):  # an imagefolder for the classifier, one bad file in it
        (root / "faces" / label).mkdir(parents=True)
        shutil.copy(root / "photos" / "a.png", root / "faces" / label / "a.png")
    (root / "faces" / "male" / "b.png").write_text("this is not an image\n")
    return root


def _one_line(capsys) -> str:
    [line] = capsys.readouterr().err.strip().splitlines()
    return line


@pytest.mark.parametrize("spelling", [["--strict"], ["--bad_images", "error"]])
def test_train_classifier_strict_stops_at_the_first_unreadable_image(
    spelling, photos, tiny_model_dir, tmp_path, capsys
):
    out, vit = tmp_path / "trained", tiny_model_dir("vit")
    capsys.readouterr()  # building the tiny model may print a bar
    argv = ["train", "classifier", "--model", str(vit), "--data", str(photos / "faces")]
    assert main([*argv, "--output-dir", str(out), *spelling]) == 1
    line = _one_line(capsys)
    assert line.startswith("hfvision train: error: unreadable image") and "b.png" in line
    assert "without --strict it is skipped" in line and "bad_images=" not in line
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing saved


def test_train_dreambooth_strict_stops_at_the_first_unreadable_image(photos, tiny_model_dir, tmp_path, capsys):
    out, sd1 = tmp_path / "db", tiny_model_dir("sd1")
    capsys.readouterr()
    argv = [
        "train",
        "dreambooth",
        "--pretrained_model_name_or_path",
        str(sd1),
        "--instance_data_dir",
        str(photos / "photos"),
        "--instance_prompt",
        "a photo of sks person",
        "--resolution",
        "32",
        "--max_train_steps",
        "1",
        "--output_dir",
        str(out),
        "--strict",
    ]
    assert main(argv) == 1
    line = _one_line(capsys)
    assert line.startswith("hfvision train: error:") and str(Path(photos / "photos" / "b.png")) in line
    assert not (out / "model_index.json").exists()


def test_strict_is_the_documented_switch_and_maps_to_bad_images(capsys):
    from hfvision.training.classification import cli as classification_cli
    from hfvision.training.dreambooth.args import parse_dreambooth_args

    required = ["--pretrained_model_name_or_path", "m", "--instance_data_dir", "d"]
    assert parse_dreambooth_args(required).bad_images == "skip"
    assert parse_dreambooth_args([*required, "--strict"]).bad_images == "error"
    assert parse_dreambooth_args([*required, "--bad_images", "error"]).bad_images == "error"
    config = classification_cli.parse_args(["--model", "m", "--data", "d", "--strict"])
    assert config.bad_images == "error"
    assert classification_cli.parse_args(["--model", "m", "--data", "d"]).bad_images == "skip"
    for command in (["train", "classifier"], ["train", "dreambooth"], ["classify"], ["data", "prepare"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        [line] = [line for line in text.splitlines() if line.strip().startswith("--strict")]
        assert "stop" in line or "first" in line, (command, line)
