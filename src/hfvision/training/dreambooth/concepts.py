"""Several subjects in one run (``--concepts_list``), caption dropout (``--caption_dropout``) and ``--repeats``.

``--concepts_list FILE`` is a JSON list in the format ShivamShrirao's DreamBooth fork made common, one object per
subject::

    [{"instance_prompt": "a photo of zwx dog", "class_prompt": "a photo of a dog",
      "instance_data_dir": "data/dog", "class_data_dir": "data/dog-class", "num_class_images": 200},
     {"instance_prompt": "a photo of ohwx man", ...}]

Optional keys: ``instance_token`` (the subject's identifier, stored in the saved pipeline) and ``repeats``.
Relative folders are resolved against the JSON file's folder, so a concepts file travels with its data. Every entry
is checked before anything is loaded; errors name the file, the entry index and the key.

Pure functions, no torch.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

_REQUIRED = ("instance_prompt", "instance_data_dir")
_PRIOR = ("class_prompt", "class_data_dir")
_OPTIONAL = ("class_prompt", "class_data_dir", "num_class_images", "instance_token", "repeats")
_KEYS = _REQUIRED + _OPTIONAL


@dataclass(frozen=True)
class Concept:
    """One subject of a multi-subject run.

    Args:
        instance_prompt (`str`): caption of the subject photos, e.g. "a photo of zwx dog".
        instance_data_dir (`Path`): folder of the subject photos.
        class_prompt (`str`, *optional*): prompt for the class images (prior preservation).
        class_data_dir (`Path`, *optional*): folder of class images (missing ones are generated).
        num_class_images (`int`, defaults to 100): class images wanted for this subject.
        instance_token (`str`, *optional*): the subject's identifier, stored in the saved pipeline.
        repeats (`int`, defaults to 1): how many times each photo appears per epoch.
    """

    instance_prompt: str
    instance_data_dir: Path
    class_prompt: str | None = None
    class_data_dir: Path | None = None
    num_class_images: int = 100
    instance_token: str | None = None
    repeats: int = 1


def load_concepts_list(
    path: str | os.PathLike, with_prior_preservation: bool = False, num_class_images: int = 100
) -> list[Concept]:
    """Read and validate a ``--concepts_list`` JSON file.

    Args:
        path (`str` or `os.PathLike`): the JSON file.
        with_prior_preservation (`bool`): every entry then needs ``class_prompt`` and ``class_data_dir``.
        num_class_images (`int`, defaults to 100): default for entries without ``num_class_images``.

    Returns:
        `list[Concept]`
    """
    path = Path(path)
    flag = f"--concepts_list {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{flag} does not exist; write a JSON list of subjects (see hfvision docs)")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{flag} must hold a non-empty JSON list of subject objects")
    return [
        _concept(entry, i, path, flag, with_prior_preservation, num_class_images) for i, entry in enumerate(entries)
    ]


def _concept(entry, index: int, path: Path, flag: str, prior: bool, default_class_images: int) -> Concept:
    where = f"{flag}: entry {index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object with instance_prompt/instance_data_dir")
    for key in entry:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(_KEYS)}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")
    for key in _REQUIRED + (_PRIOR if prior else ()):
        if key not in entry:
            reason = " (with_prior_preservation is on)" if key in _PRIOR else ""
            raise ValueError(f"{where}: missing {key!r}{reason}")
    for key in ("instance_prompt", "instance_data_dir", "class_prompt", "class_data_dir", "instance_token"):
        if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
            raise ValueError(f"{where}: {key!r} must be a non-empty string, got {entry[key]!r}")
    for key, minimum in (("num_class_images", 0), ("repeats", 1)):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ValueError(f"{where}: {key!r} must be an integer >= {minimum}, got {value!r}")
    token = entry.get("instance_token")
    if token is not None and token not in entry["instance_prompt"].split():
        raise ValueError(
            f"{where}: 'instance_token' {token!r} does not appear as a word in 'instance_prompt' "
            f"{entry['instance_prompt']!r}"
        )

    def folder(key: str, must_exist: bool) -> Path | None:
        if key not in entry:
            return None
        p = Path(entry[key]).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if must_exist and not p.is_dir():
            raise ValueError(
                f"{where}: {key!r} {entry[key]!r} is not a folder (relative paths start at {path.parent})"
            )
        return p

    return Concept(
        instance_prompt=entry["instance_prompt"],
        instance_data_dir=folder("instance_data_dir", True),
        class_prompt=entry.get("class_prompt"),
        class_data_dir=folder("class_data_dir", False),  # generated into when missing
        num_class_images=entry.get("num_class_images", default_class_images),
        instance_token=token,
        repeats=entry.get("repeats", 1),
    )


@dataclass(frozen=True)
class ConceptItem:
    """One training example of a multi-subject run: an instance photo, its caption and its subject's index."""

    path: Path
    caption: str
    concept: int


def concept_items(concepts: Sequence[Concept], caption_from_filename: bool = False) -> list[ConceptItem]:
    """Every subject's photos (sorted per folder), captioned and repeated: the instance side of a multi-subject run.

    Captions follow hfvision's rule (sidecar ``.txt`` > file name if asked > the subject's ``instance_prompt``);
    each photo appears ``concept.repeats`` times. A subject folder without images is an error naming it.
    """
    from ...data.captions import read_caption
    from ...data.image_io import IMAGE_EXTENSIONS

    items: list[ConceptItem] = []
    for index, concept in enumerate(concepts):
        folder = Path(concept.instance_data_dir)
        photos = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not photos:
            raise ValueError(f"concept {index}: instance_data_dir {folder} holds no images")
        captioned = [
            ConceptItem(p, read_caption(p, concept.instance_prompt, caption_from_filename), index) for p in photos
        ]
        items += expand_repeats(captioned, concept.repeats)
    return items


def expand_repeats(items: Sequence[T], repeats: int) -> list[T]:
    """Each item ``repeats`` times in a row (``[a, b]``, 2 -> ``[a, a, b, b]``), as diffusers' ``--repeats``."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"--repeats={repeats!r} must be an integer >= 1")
    return [item for item in items for _ in range(repeats)]


def check_caption_dropout(probability: float) -> float:
    """Validate ``--caption_dropout`` (a probability in [0, 1])."""
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise ValueError(f"--caption_dropout={probability!r} must be a probability between 0 and 1 (e.g. 0.1)")
    return float(probability)


def drop_caption(caption: str, probability: float, rng: np.random.Generator) -> str:
    """``""`` with ``probability``, else ``caption``; one draw from ``rng`` either way (so later draws of the same
    generator, e.g. crop and flip, do not depend on the outcome).

    Seed ``rng`` with the sample's seed (as the trainer's samplers provide) and a resumed run drops exactly the same
    captions as an uninterrupted one.
    """
    draw = rng.random()
    return "" if draw < probability else caption


def dropout_captions(captions: Sequence[str], probability: float, seed: int) -> list[str]:
    """:func:`drop_caption` over a list with one generator seeded ``seed`` (reproducible)."""
    check_caption_dropout(probability)
    rng = np.random.default_rng(seed)
    return [drop_caption(c, probability, rng) for c in captions]
