"""timm Hub-layout configs that transformers' TimmWrapper can load."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .io import atomic_write


def fix_timm_config(config_path: str | os.PathLike) -> None:
    """Make a timm ``config.json`` loadable by transformers' TimmWrapper (in place, atomically).

    timm's ``save_for_hf`` records ``num_classes`` inside ``model_args``; TimmWrapper passes ``num_classes`` again
    ("got multiple values for keyword argument 'num_classes'"), so it is dropped from ``model_args``.
    """
    config = json.loads(Path(config_path).read_text())
    config.get("model_args", {}).pop("num_classes", None)
    with atomic_write(config_path, "w") as f:
        json.dump(config, f, indent=2)
