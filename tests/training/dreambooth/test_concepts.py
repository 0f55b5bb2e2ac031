"""--concepts_list (several subjects), --caption_dropout and --repeats: parsing, one-line errors naming the entry
index and key, seeded dropout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfvision.training.dreambooth.concepts import (
    Concept,
    check_caption_dropout,
    concept_items,
    drop_caption,
    dropout_captions,
    expand_repeats,
    load_concepts_list,
)


@pytest.fixture
def data(tmp_path) -> Path:
    for name in ("dog", "man"):
        (tmp_path / "data" / name).mkdir(parents=True)
    return tmp_path


def write(folder: Path, entries) -> Path:
    path = folder / "concepts.json"
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


DOG = {
    "instance_prompt": "a photo of zwx dog",
    "class_prompt": "a photo of a dog",
    "instance_data_dir": "data/dog",
    "class_data_dir": "data/dog-class",
    "num_class_images": 200,
}
MAN = {
    "instance_prompt": "a photo of ohwx man",
    "class_prompt": "a photo of a man",
    "instance_data_dir": "data/man",
    "class_data_dir": "data/man-class",
    "instance_token": "ohwx",
    "repeats": 3,
}


def test_load_concepts_list(data):
    concepts = load_concepts_list(write(data, [DOG, MAN]), with_prior_preservation=True, num_class_images=50)
    assert concepts == [
        Concept("a photo of zwx dog", data / "data/dog", "a photo of a dog", data / "data/dog-class", 200, None, 1),
        Concept("a photo of ohwx man", data / "data/man", "a photo of a man", data / "data/man-class", 50, "ohwx", 3),
    ]
    # absolute folders kept; class keys optional without prior preservation
    solo = {"instance_prompt": "sks cat", "instance_data_dir": str(data / "data/dog")}
    assert load_concepts_list(write(data, [solo]))[0].instance_data_dir == data / "data/dog"


@pytest.mark.parametrize(
    "entries, message",
    [
        ("[{", "is not valid JSON (line 1, column 3"),
        ({"instance_prompt": "x"}, "must hold a non-empty JSON list"),
        ([], "must hold a non-empty JSON list"),
        ([DOG, "data/man"], "entry 1 is a str, not an object"),
        (
            [DOG, {**MAN, "instance_promt": "x"}],
            "entry 1: unknown key 'instance_promt'; did you mean 'instance_prompt'?",
        ),
        ([{k: v for k, v in DOG.items() if k != "instance_data_dir"}], "entry 0: missing 'instance_data_dir'"),
        (
            [DOG, {k: v for k, v in MAN.items() if k != "class_prompt"}],
            "entry 1: missing 'class_prompt' (with_prior_preservation is on)",
        ),
        ([{**DOG, "instance_prompt": " "}], "entry 0: 'instance_prompt' must be a non-empty string, got ' '"),
        ([DOG, {**MAN, "num_class_images": "200"}], "entry 1: 'num_class_images' must be an integer >= 0, got '200'"),
        ([DOG, {**MAN, "repeats": 0}], "entry 1: 'repeats' must be an integer >= 1, got 0"),
        ([DOG, {**MAN, "instance_token": "sks"}], "entry 1: 'instance_token' 'sks' does not appear as a word"),
        (
            [DOG, {**MAN, "instance_data_dir": "data/woman"}],
            "entry 1: 'instance_data_dir' 'data/woman' is not a folder",
        ),
    ],
)
def test_errors_name_the_entry_and_key(data, entries, message):
    path = write(data, entries)
    with pytest.raises(ValueError) as info:
        load_concepts_list(path, with_prior_preservation=True)
    text = str(info.value)
    assert text.startswith(f"--concepts_list {path}") and message in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--concepts_list .*nope.json does not exist"):
        load_concepts_list(tmp_path / "nope.json")


def test_repeats():
    assert expand_repeats(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]
    assert expand_repeats(["a"], 1) == ["a"]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="--repeats=.* must be an integer >= 1"):
            expand_repeats(["a"], bad)


def test_caption_dropout_is_seeded():
    captions = [f"caption {i}" for i in range(2000)]
    dropped = dropout_captions(captions, 0.1, seed=4)
    assert dropped == dropout_captions(captions, 0.1, seed=4)
    assert dropped != dropout_captions(captions, 0.1, seed=5)
    assert all(d in ("", c) for d, c in zip(dropped, captions))
    # the exact positions are the draws of the seeded generator below p
    want = np.random.default_rng(4).random(len(captions)) < 0.1
    assert [d == "" for d in dropped] == want.tolist()
    assert 150 < sum(want) < 250
    assert dropout_captions(captions, 0.0, 1) == captions and set(dropout_captions(captions, 1.0, 1)) == {""}
    # one draw per call whatever the outcome: later draws (crop, flip) do not depend on dropout
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    drop_caption("x", 1.0, a), drop_caption("x", 0.0, b)
    assert a.random() == b.random()
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="--caption_dropout=.* must be a probability between 0 and 1"):
            check_caption_dropout(bad)


def test_concept_items_caption_and_repeat(data):
    from PIL import Image

    for name, files in (("dog", ["b.png", "a.jpg"]), ("man", ["x.png"])):
        for f in files:
            Image.new("RGB", (8, 8)).save(data / "data" / name / f)
    (data / "data" / "dog" / "a.txt").write_text("zwx dog on grass")
    concepts = load_concepts_list(write(data, [DOG, MAN]))
    items = [(i.path.name, i.caption, i.concept) for i in concept_items(concepts)]
    assert (
        items
        == [("a.jpg", "zwx dog on grass", 0), ("b.png", "a photo of zwx dog", 0)]
        + [("x.png", "a photo of ohwx man", 1)] * 3
    )
    (data / "data" / "man" / "x.png").unlink()
    with pytest.raises(ValueError, match="concept 1: instance_data_dir .*man holds no images"):
        concept_items(concepts)
