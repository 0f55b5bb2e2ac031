"""Classification data through `datasets`: imagefolder / save_to_disk / Hub id, checked, labelled and split.

Handling of bad input (documented behaviour, each a one-line error naming the folder, split or column):

- a folder with a single class, or a class folder without images: ``ValueError`` (a silently missing class would
  change the label set);
- unreadable images (corrupt, truncated, not an image, ...): dropped with one warning listing them when
  ``bad_images="skip"`` (default), ``ValueError`` naming the first one when ``"error"``; ``"off"`` skips the check;
- a class left with fewer than 2 images (cannot be split stratified) or without training images: ``ValueError``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...utils.logging import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = get_logger(__name__)

SPLIT_DIR_NAMES = {"train", "training", "validation", "valid", "val", "test", "testing", "eval", "dev"}
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "eval", "dev", "test")


@dataclass
class ClassificationData:
    """Train and validation splits with raw (undecoded) images and integer labels.

    ``labels[i]`` is the name of label id ``i`` in both splits. Images stay undecoded
    (``{"bytes", "path"}``); transforms decode them lazily with :func:`hfvision.data.load_image`.
    """

    train: datasets.Dataset
    validation: datasets.Dataset
    labels: list[str]
    image_column: str
    label_column: str
    group_column: str | None = None
    source: str = ""
    hub_dataset: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Number of images per label name in ``split`` ("train" or "validation")."""
        ds = self.train if split == "train" else self.validation
        counts = Counter(ds[self.label_column])
        return {name: counts.get(i, 0) for i, name in enumerate(self.labels)}

    def align_labels(self, label2id: dict[str, int]) -> ClassificationData:
        """Renumber labels to follow ``label2id`` (a model's mapping over the same label names)."""
        if {k.lower() for k in label2id} != {k.lower() for k in self.labels}:
            raise ValueError(f"cannot align labels {self.labels} with a model mapping over {sorted(label2id)}")
        order = sorted(label2id, key=label2id.get)
        train = self.train.align_labels_with_mapping(label2id, self.label_column)
        validation = self.validation.align_labels_with_mapping(label2id, self.label_column)
        return ClassificationData(
            train,
            validation,
            order,
            self.image_column,
            self.label_column,
            self.group_column,
            self.source,
            self.hub_dataset,
            self.skipped,
        )


def load_classification_data(
    data: str | os.PathLike,
    *,
    train_split: str = "train",
    validation_split: str | None = None,
    validation_size: float = 0.2,
    image_column: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    seed: int = 42,
    bad_images: str = "skip",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    revision: str | None = None,
) -> ClassificationData:
    """Load, check and split an image-classification dataset.

    Args:
        data (`str` or `os.PathLike`):
            An imagefolder directory (``root/<class>/<image>`` or ``root/<split>/<class>/<image>``; a
            ``metadata.csv`` with ``file_name`` and e.g. ``group`` columns adds columns), a ``save_to_disk``
            directory, or a Hub dataset id.
        validation_size (`float`, *optional*, defaults to 0.2):
            Held-out fraction (or count if >= 1) of a seeded, stratified split when there is no validation split.
        bad_images (`str`, *optional*, defaults to `"skip"`):
            ``"skip"`` unreadable images with a warning, ``"error"`` on the first, ``"off"`` to not check.

    Returns:
        [`ClassificationData`]

    Example:

    >>> data = load_classification_data("photos/", validation_size=0.25, seed=0)
    >>> data.labels, data.class_counts("validation")
    (['female', 'male'], {'female': 5, 'male': 5})
    """
    import datasets

    dsd, source, hub_id = _load_raw(data, revision)
    if train_split not in dsd:
        raise ValueError(f"{source} has no split {train_split!r}; its splits are: {', '.join(dsd)} (set train_split)")
    image_column = _image_column(dsd[train_split], image_column, source)
    label_column = _label_column(dsd[train_split], label_column, source)
    if group_column is None and "group" in dsd[train_split].column_names:
        group_column = "group"
        logger.info("%s has a 'group' column: a per-group report will be written", source)
    elif group_column is not None and group_column not in dsd[train_split].column_names:
        raise ValueError(f"{source} has no group column {group_column!r}; columns: {dsd[train_split].column_names}")

    if validation_split is None:
        validation_split = next((s for s in VALIDATION_SPLIT_NAMES if s in dsd and s != train_split), None)
    elif validation_split not in dsd:
        raise ValueError(f"{source} has no split {validation_split!r}; its splits are: {', '.join(dsd)}")
    keep = [train_split] + ([validation_split] if validation_split else [])
    dsd = datasets.DatasetDict({k: dsd[k] for k in keep})
    dsd = _encode_labels(dsd, label_column, source)
    dsd = dsd.cast_column(image_column, datasets.Image(decode=False))

    skipped: list[tuple[str, str]] = []
    if bad_images != "off":
        for split in keep:
            dsd[split], bad = _drop_unreadable(dsd[split], image_column, split, strict=bad_images == "error")
            skipped += bad
        if skipped:
            shown = "; ".join(f"{name} ({reason})" for name, reason in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            logger.warning("skipped %d unreadable image(s) in %s: %s%s", len(skipped), source, shown, more)

    labels = list(dsd[train_split].features[label_column].names)
    train = dsd[train_split]
    _check_classes(train, label_column, labels, source, train_split)
    if validation_split:
        validation = dsd[validation_split]
        logger.info("using split %r of %s for validation", validation_split, source)
    else:
        train, validation = _stratified_split(train, label_column, labels, validation_size, seed, source)
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(max_train_samples))
    if max_eval_samples is not None and max_eval_samples < len(validation):
        validation = validation.shuffle(seed=seed).select(range(max_eval_samples))
    logger.info(
        "%s: %d training / %d validation images, labels %s", source, len(train), len(validation), ", ".join(labels)
    )
    return ClassificationData(
        train, validation, labels, image_column, label_column, group_column, source, hub_id, skipped
    )


def _load_raw(data, revision) -> tuple[datasets.DatasetDict, str, str | None]:
    import datasets

    path = Path(os.path.expanduser(str(data)))
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
            return loaded, f"dataset {path}", None
        scan_imagefolder(path)
        loaded = datasets.load_dataset("imagefolder", data_dir=str(path), drop_labels=False)
        if "label" not in next(iter(loaded.values())).column_names:
            # With a metadata file `datasets` stops inferring labels from folder names; apply the same rule here.
            loaded = loaded.cast_column("image", datasets.Image(decode=False))
            loaded = loaded.map(lambda row: {"label": Path(row["image"]["path"]).parent.name})
        return loaded, f"image folder {path}", None
    if path.exists():
        raise ValueError(f"data={str(data)!r} is a file; pass an imagefolder or save_to_disk directory or a Hub id")
    text = str(data)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep in text.replace("/", ""):
        raise FileNotFoundError(f"data directory {text!r} does not exist")
    try:
        loaded = datasets.load_dataset(text, revision=revision)
    except Exception as err:  # noqa: BLE001 - re-raised with what was tried
        raise ValueError(
            f"data={text!r} is not a local directory and could not be loaded as a Hub dataset: {err}"
        ) from err
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded, f"Hub dataset {text}", text


def _image_extensions() -> set[str]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {e.lower() for e in ImageFolder.EXTENSIONS}


def scan_imagefolder(root: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Check an imagefolder layout before `datasets` reads it; returns ``{split: {class: n_image_files}}``.

    Raises ``ValueError`` for a folder without class subfolders, a class folder without image files, and a split
    with fewer than two classes (`datasets` would silently drop the label column or the class).
    """
    root = Path(root)
    exts = _image_extensions()

    def subdirs(p: Path) -> list[Path]:
        return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))

    def n_images(p: Path) -> int:
        return sum(1 for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)

    top = subdirs(root)
    if not top:
        loose = n_images(root)
        raise ValueError(
            f"{root} has no class subfolders"
            + (f" ({loose} images lie directly in it)" if loose else "")
            + "; arrange images as <root>/<class name>/<image> with one folder per class"
        )
    is_split_layout = all(d.name.lower() in SPLIT_DIR_NAMES for d in top)
    layout = {d.name: subdirs(d) for d in top} if is_split_layout else {"train": top}
    result = {}
    for split, class_dirs in layout.items():
        counts = {d.name: n_images(d) for d in class_dirs}
        empty = [name for name, n in counts.items() if n == 0]
        where = f"{root / split}" if is_split_layout else f"{root}"
        if empty:
            raise ValueError(
                f"class folder(s) {', '.join(repr(e) for e in empty)} in {where} contain no images; "
                "add images or remove the folder(s)"
            )
        if len(counts) < 2:
            found = f"only class {next(iter(counts))!r}" if counts else "no class folders"
            raise ValueError(f"{where} has {found}; a classifier needs images of at least two classes")
        result[split] = counts
    return result


def _image_column(ds, name, source) -> str:
    import datasets

    if name is not None:
        if name not in ds.column_names:
            raise ValueError(f"{source} has no image column {name!r}; columns: {ds.column_names}")
        return name
    found = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    if found:
        return found[0]
    for candidate in ("image", "img", "pixel_values"):
        if candidate in ds.column_names:
            return candidate
    raise ValueError(f"{source} has no image column (columns: {ds.column_names}); pass image_column")


def _label_column(ds, name, source) -> str:
    import datasets

    if name is not None:
        if name not in ds.column_names:
            raise ValueError(f"{source} has no label column {name!r}; columns: {ds.column_names}")
        return name
    for candidate in ("label", "labels"):
        if candidate in ds.column_names:
            return candidate
    found = [c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"{source} has no label column (columns: {ds.column_names}); pass label_column")


def _encode_labels(dsd, column: str, source: str):
    import datasets

    feature = next(iter(dsd.values())).features[column]
    if isinstance(feature, datasets.ClassLabel):
        names = [list(ds.features[column].names) for ds in dsd.values()]
        if any(n != names[0] for n in names):
            raise ValueError(f"{source}: splits have different label names {names}; give every split the same classes")
        return dsd
    if isinstance(feature, datasets.Value) and feature.dtype == "string":
        return dsd.class_encode_column(column)  # one sorted name list shared by every split
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        top = max(max(ds[column]) for ds in dsd.values() if len(ds))
        return dsd.cast_column(column, datasets.ClassLabel(names=[str(i) for i in range(top + 1)]))
    raise ValueError(f"{source}: label column {column!r} has type {feature}; expected class names or integer ids")


def _drop_unreadable(ds, column: str, split: str, strict: bool):
    from tqdm.auto import tqdm

    from ...data.image_io import ImageLoadError, load_image

    bad_rows: list[int] = []
    bad: list[tuple[str, str]] = []
    rows = ds.select_columns([column])
    for start in tqdm(range(0, len(rows), 64), desc=f"checking {split} images", disable=len(rows) < 512):
        for offset, value in enumerate(rows[start : start + 64][column]):
            name = (value or {}).get("path") or f"{split}[{start + offset}]"
            try:
                load_image(read_image_source(value))
            except (ImageLoadError, ValueError) as err:
                if strict:
                    raise ValueError(
                        f"unreadable image {name}: {getattr(err, 'reason', err)}; fix or remove it "
                        "(without bad_images='error' (--strict) it is skipped with a warning)"
                    ) from err
                bad_rows.append(start + offset)
                bad.append((name, getattr(err, "reason", str(err))))
    if not bad_rows:
        return ds, bad
    drop = set(bad_rows)
    return ds.select([i for i in range(len(ds)) if i not in drop]), bad


def read_image_source(value):
    """What :func:`hfvision.data.load_image` should read for an undecoded `datasets` image value."""
    if value is None:
        raise ValueError("missing image")
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise ValueError("image value has neither bytes nor path")
    return value


def _check_classes(ds, column: str, labels: list[str], source: str, split: str) -> None:
    counts = Counter(ds[column])
    present = [name for i, name in enumerate(labels) if counts.get(i, 0) > 0]
    missing = [name for i, name in enumerate(labels) if counts.get(i, 0) == 0]
    if len(present) < 2:
        found = f"only class {present[0]!r}" if present else "no readable images"
        raise ValueError(f"{source} split {split!r} has {found}; a classifier needs images of at least two classes")
    if missing:
        raise ValueError(
            f"{source} split {split!r} has no (readable) images of class(es) {', '.join(map(repr, missing))}; "
            "add images or remove those classes"
        )


def _stratified_split(ds, column, labels, size, seed, source):
    counts = Counter(ds[column])
    too_few = [labels[i] for i, n in sorted(counts.items()) if n < 2]
    if too_few:
        raise ValueError(
            f"{source}: class(es) {', '.join(map(repr, too_few))} have fewer than 2 images, too few to hold one out "
            "for validation; add images or provide a validation split"
        )
    test_size = int(size) if size >= 1 else size
    n_val = test_size if isinstance(test_size, int) else int(round(test_size * len(ds)))
    if n_val < len(labels) or len(ds) - n_val < len(labels):
        raise ValueError(
            f"{source}: validation_size={size} holds out {n_val} of {len(ds)} images, but a stratified split needs "
            f"at least one image per class ({len(labels)}) on each side; change validation_size or add images"
        )
    parts = ds.train_test_split(test_size=test_size, stratify_by_column=column, seed=seed)
    logger.info(
        "split %s: %d train / %d validation (stratified, seed %d)",
        source,
        len(parts["train"]),
        len(parts["test"]),
        seed,
    )
    return parts["train"], parts["test"]
