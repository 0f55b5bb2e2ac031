"""Classification metrics as local `evaluate` modules (no Hub download, no scikit-learn).

Each ``<name>.py`` here is an `evaluate` metric script: ``evaluate.load(path_to_script)`` loads it offline, exactly
like a Hub metric. They are computed with numpy from one confusion matrix (``_counts.py``), and their outputs use the
same keys as the canonical Hub metrics of the same name. Use :func:`metric_path` to get a script's path.

>>> import evaluate
>>> accuracy = evaluate.load(metric_path("accuracy"))
>>> accuracy.compute(predictions=[0, 1, 1], references=[0, 1, 0])
{'accuracy': 0.6666666666666666}
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("accuracy", "precision", "recall", "f1", "confusion_matrix")


def metric_path(name: str) -> str:
    """Path of the bundled `evaluate` script for ``name`` (one of :data:`METRICS`)."""
    if name not in METRICS:
        raise ValueError(f"unknown bundled metric {name!r}; choose one of {', '.join(METRICS)}")
    return str(Path(__file__).with_name(f"{name}.py"))
