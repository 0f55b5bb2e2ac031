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

from .checks import check_options

SNAPSHOT = Path(__file__).with_name("flags.json")


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
