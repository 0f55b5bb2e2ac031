"""Data loading: imagefolder / save_to_disk, seeded stratified split, labels, and the documented bad-input handling."""

from __future__ import annotations

import logging
import shutil
from collections import Counter

import pytest

from hfvision.training.classification.data import load_classification_data, scan_imagefolder
from hfvision.training.classification.synthetic import write_synthetic_imagefolder


def _files_by_label(data, split):
    ds = getattr(data, split)
    return sorted(
        (row[data.image_column]["path"].rsplit("/", 2)[-2], data.labels[row[data.label_column]]) for row in ds
    )


def test_imagefolder_split_is_seeded_stratified_and_labelled(two_class_folder):
    data = load_classification_data(two_class_folder, validation_size=0.25, seed=0)
    assert data.labels == ["female", "male"]
    assert data.class_counts("validation") == {"female": 5, "male": 5}  # stratified: 25% of 20 per class
    assert data.class_counts("train") == {"female": 15, "male": 15}
    # every image's label is its folder, in both splits, and no image is in both
    for split in ("train", "validation"):
        assert all(folder == label for folder, label in _files_by_label(data, split))
    train_paths = {r["path"] for r in data.train[data.image_column]}
    val_paths = {r["path"] for r in data.validation[data.image_column]}
    assert not train_paths & val_paths and len(train_paths | val_paths) == 40
    # the same seed gives the same split, another seed another one
    again = load_classification_data(two_class_folder, validation_size=0.25, seed=0)
    assert {r["path"] for r in again.validation[data.image_column]} == val_paths
    other = load_classification_data(two_class_folder, validation_size=0.25, seed=1)
    assert {r["path"] for r in other.validation[data.image_column]} != val_paths
    assert data.group_column is None


def test_group_column_from_metadata_csv(grouped_folder):
    data = load_classification_data(grouped_folder, validation_size=0.25, seed=0)
    assert data.group_column == "group"
    assert data.labels == ["female", "male"]
    assert set(data.validation["group"]) <= {"young", "old"}
    for split in ("train", "validation"):  # labels still come from the folders when a metadata file exists
        assert all(folder == label for folder, label in _files_by_label(data, split))


def test_save_to_disk_with_string_labels_and_validation_split(tmp_path, two_class_folder):
    import datasets

    rows = {"image": [], "label": [], "split": []}
    for i, path in enumerate(sorted(two_class_folder.glob("*/*.png"))):
        rows["image"].append(str(path))
        rows["label"].append(path.parent.name.upper())  # string labels, not a ClassLabel
        rows["split"].append("validation" if i % 4 == 0 else "train")
    full = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    dsd = datasets.DatasetDict(
        {s: full.filter(lambda r, s=s: r["split"] == s).remove_columns("split") for s in ("train", "validation")}
    )
    dsd.save_to_disk(tmp_path / "saved")
    data = load_classification_data(tmp_path / "saved")
    assert data.labels == ["FEMALE", "MALE"]
    assert len(data.validation) == 10 and len(data.train) == 30  # the given split is used, not re-split
    assert Counter(data.train["label"]) == Counter({0: 15, 1: 15})
    # a model whose head has the same names in another order/case: data renumbered to the model's ids
    aligned = data.align_labels({"male": 0, "female": 1})
    assert aligned.labels == ["male", "female"]
    assert aligned.train["label"] == [1 - x for x in data.train["label"]]


def test_split_layout_folders(tmp_path):
    write_synthetic_imagefolder(tmp_path / "data" / "train", per_class=6, seed=0)
    write_synthetic_imagefolder(tmp_path / "data" / "validation", per_class=2, seed=1)
    assert scan_imagefolder(tmp_path / "data") == {
        "train": {"female": 6, "male": 6},
        "validation": {"female": 2, "male": 2},
    }
    data = load_classification_data(tmp_path / "data")
    assert data.class_counts("validation") == {"female": 2, "male": 2}


def test_one_class_and_empty_class_are_errors(tmp_path):
    one = write_synthetic_imagefolder(tmp_path / "one", labels=("cat",), per_class=4)
    with pytest.raises(ValueError, match="only class 'cat'.*at least two classes"):
        load_classification_data(one)
    empty = write_synthetic_imagefolder(tmp_path / "empty", per_class=4)
    (empty / "other").mkdir()
    with pytest.raises(ValueError, match="class folder\\(s\\) 'other'.*contain no images"):
        load_classification_data(empty)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next(one.glob("cat/*.png")), loose / "a.png")
    with pytest.raises(ValueError, match="no class subfolders \\(1 images lie directly in it\\)"):
        load_classification_data(loose)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_classification_data(tmp_path / "missing")


def test_unreadable_images_skipped_with_warning_or_error(tmp_path, caplog):
    root = write_synthetic_imagefolder(tmp_path / "data", per_class=8)
    (root / "male" / "broken.png").write_bytes(b"not a png at all")
    (root / "female" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="hfvision"):
        data = load_classification_data(root, validation_size=0.25)
    assert len(data.train) + len(data.validation) == 16
    assert sorted(name.rsplit("/", 1)[-1] for name, _ in data.skipped) == ["broken.png", "empty.jpg"]
    assert "skipped 2 unreadable image(s)" in caplog.text and "broken.png" in caplog.text
    with pytest.raises(ValueError, match="unreadable image .*(broken.png|empty.jpg)"):
        load_classification_data(root, bad_images="error")


def test_too_few_images_for_a_stratified_split(tmp_path):
    root = write_synthetic_imagefolder(tmp_path / "data", per_class=3)
    for extra in sorted((root / "male").glob("*.png"))[1:]:
        extra.unlink()
    with pytest.raises(ValueError, match="'male' have fewer than 2 images"):
        load_classification_data(root)
    root2 = write_synthetic_imagefolder(tmp_path / "data2", per_class=3)
    with pytest.raises(ValueError, match="validation_size=0.1 holds out 1 of 6 images"):
        load_classification_data(root2, validation_size=0.1)


def test_mismatched_split_labels_are_an_error(tmp_path):
    import datasets

    def part(labels):
        return datasets.Dataset.from_dict({"image": [None] * len(labels), "label": labels}).cast_column(
            "label", datasets.ClassLabel(names=sorted(set(labels)))
        )

    datasets.DatasetDict({"train": part(["a", "b"]), "validation": part(["a", "c"])}).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match="splits have different label names"):
        load_classification_data(tmp_path / "d", bad_images="off")
