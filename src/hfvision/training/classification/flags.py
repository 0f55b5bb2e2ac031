"""The ``hfvision train classifier`` flags without importing transformers' ``TrainingArguments`` (which loads torch).

``flags.json`` is a snapshot of [`ImageClassificationConfig`]'s fields (see
:func:`hfvision.utils.config_parser.flag_snapshot`) taken with the pinned transformers. When the installed
transformers is that version, :func:`flags_class` rebuilds the same flags from it, so a usage error (unknown flag, bad
value, missing ``--model``) or ``--help`` answers in a fraction of a second; the config itself is still built from
[`ImageClassificationConfig`] once the flags parse. With another transformers the live class is used (slower, same
flags). After changing the config's fields (or the transformers pin), regenerate the snapshot with::

    python -m hfvision.training.classification.flags

(``tests/utils/test_flag_snapshot.py`` fails until you do).
"""

from __future__ import annotations

import functools
import json
from importlib.metadata import version
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("flags.json")
BAD_IMAGE_POLICIES = ("skip", "error", "off")
LORA_SAVE_MODES = ("both", "merged", "adapter")


def check_options(config) -> None:
    """hfvision's own checks of a classifier config's values (raises `ValueError` naming the field and the fix); run
    by [`ImageClassificationConfig`] and by the snapshot's flags class before transformers loads."""
    if not config.model_name_or_path:
        raise ValueError(
            "model_name_or_path is required (--model): a Hub id or a local directory of an image classifier"
        )
    if not config.data:
        raise ValueError(
            "data is required (--data): an imagefolder directory, a save_to_disk directory or a Hub dataset id"
        )
    if not (config.num_train_epochs > 0 or config.max_steps > 0):
        raise ValueError(f"num_train_epochs={config.num_train_epochs:g} must be > 0 (--epochs), or set max_steps")
    if not config.validation_size > 0:
        raise ValueError(
            f"validation_size={config.validation_size} must be > 0 (a fraction below 1 or an image count)"
        )
    if config.bad_images not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images={config.bad_images!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
    if config.lora_save not in LORA_SAVE_MODES:
        raise ValueError(f"lora_save={config.lora_save!r} must be one of {', '.join(LORA_SAVE_MODES)}")
    if config.lora and config.lora_r < 1:
        raise ValueError(f"lora_r={config.lora_r} must be a positive rank, e.g. 8")


def snapshot_data() -> dict:
    """The snapshot of the live [`ImageClassificationConfig`] (imports transformers), as ``flags.json`` holds it."""
    from ...utils.config_parser import flag_snapshot
    from .config import ImageClassificationConfig

    fields = json.loads(json.dumps(flag_snapshot(ImageClassificationConfig)))
    return {"transformers": version("transformers"), "fields": fields}


@functools.cache
def flags_class() -> type:
    """The class whose fields give the classifier's flags: the snapshot's, if it was taken with the installed
    transformers, else [`ImageClassificationConfig`] itself."""
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    if snapshot["transformers"] != version("transformers"):
        from .config import ImageClassificationConfig

        return ImageClassificationConfig
    from ...utils.config_parser import class_from_snapshot

    return class_from_snapshot("ImageClassificationFlags", snapshot["fields"], post_init=check_options)


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot_data(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
