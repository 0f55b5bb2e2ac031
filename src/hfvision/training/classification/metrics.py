"""Classification metrics through `evaluate`: scores for the Trainer, a full report, and its JSON + PNG files.

The metrics come from hfvision's bundled `evaluate` module (``metric_modules/classification.py``), loaded with
``evaluate.load(<path to script>)``: that works offline, unlike ``evaluate.load("accuracy")`` which downloads the
script from the Hub. They are computed with numpy and agree with scikit-learn (tested).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from ...utils.io import atomic_write
from .metric_modules import CLASSIFICATION_METRIC

METRICS_FILE = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"


@cache
def load_metric():
    """hfvision's bundled `evaluate` module: accuracy, precision, recall, F1 and the confusion matrix."""
    import evaluate

    return evaluate.load(CLASSIFICATION_METRIC)


def compute_scores(predictions, references, num_labels: int) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class lists and the confusion matrix (rows: true labels)."""
    kw = {"predictions": [int(p) for p in predictions], "references": [int(r) for r in references]}
    kw["labels"] = list(range(num_labels))
    macro = load_metric().compute(**kw, average="macro")
    per_class = load_metric().compute(**kw, average=None)
    out: dict[str, Any] = {"accuracy": macro["accuracy"]}
    for name in ("precision", "recall", "f1"):
        out[f"{name}_macro"] = macro[name]
        out[f"{name}_per_class"] = per_class[name]
    out["confusion_matrix"] = macro["confusion_matrix"]
    return out


class ClassificationMetrics:
    """``compute_metrics`` for `transformers.Trainer`: accuracy, macro F1/precision/recall, per-class recall.

    >>> trainer = Trainer(..., compute_metrics=ClassificationMetrics(["female", "male"]))
    """

    def __init__(self, labels: list[str]):
        self.labels = list(labels)

    def __call__(self, eval_pred) -> dict[str, float]:
        import numpy as np

        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        scores = compute_scores(np.argmax(logits, axis=-1), eval_pred.label_ids, len(self.labels))
        out = {k: scores[k] for k in ("accuracy", "f1_macro", "precision_macro", "recall_macro")}
        for name, recall in zip(self.labels, scores["recall_per_class"]):
            out[f"recall_{name}"] = recall
        return out


def classification_report(
    predictions, references, labels: list[str], groups: list[Any] | None = None
) -> dict[str, Any]:
    """A JSON-able report: overall scores, per-class scores with support, the confusion matrix, per-group scores.

    Args:
        predictions, references (`list[int]`): predicted and true label ids.
        labels (`list[str]`): label names, index = id.
        groups (`list`, *optional*): a group value per sample (e.g. an age band); adds ``per_group``.

    >>> report = classification_report([0, 1, 1], [0, 1, 0], ["female", "male"])
    >>> report["confusion_matrix"]["matrix"]
    [[1, 1], [0, 1]]
    """
    predictions = [int(p) for p in predictions]
    references = [int(r) for r in references]
    scores = compute_scores(predictions, references, len(labels))
    matrix = scores["confusion_matrix"]
    report: dict[str, Any] = {
        "num_samples": len(references),
        "accuracy": scores["accuracy"],
        "f1_macro": scores["f1_macro"],
        "precision_macro": scores["precision_macro"],
        "recall_macro": scores["recall_macro"],
        "per_class": {
            name: {
                "precision": scores["precision_per_class"][i],
                "recall": scores["recall_per_class"][i],
                "f1": scores["f1_per_class"][i],
                "support": int(sum(matrix[i])),
            }
            for i, name in enumerate(labels)
        },
        "confusion_matrix": {"labels": list(labels), "rows": "true label", "columns": "predicted", "matrix": matrix},
    }
    if groups is not None:
        if len(groups) != len(references):
            raise ValueError(f"{len(groups)} group values for {len(references)} samples")
        per_group = {}
        for group in sorted({str(g) for g in groups}):
            idx = [i for i, g in enumerate(groups) if str(g) == group]
            sub = compute_scores([predictions[i] for i in idx], [references[i] for i in idx], len(labels))
            per_group[group] = {
                "num_samples": len(idx),
                "accuracy": sub["accuracy"],
                "f1_macro": sub["f1_macro"],
                "recall_per_class": dict(zip(labels, sub["recall_per_class"])),
            }
        report["per_group"] = per_group
        accuracies = [g["accuracy"] for g in per_group.values()]
        report["group_accuracy_gap"] = max(accuracies) - min(accuracies) if accuracies else 0.0
    return report


def save_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``metrics.json`` and ``confusion_matrix.png`` into ``out_dir`` (atomically); returns their paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / METRICS_FILE, "png": out_dir / CONFUSION_PNG}
    with atomic_write(paths["json"], "w") as f:
        json.dump(report, f, indent=2)
    image = render_confusion_matrix(report["confusion_matrix"]["matrix"], report["confusion_matrix"]["labels"])
    with atomic_write(paths["png"], "wb") as f:
        image.save(f, format="PNG")
    return paths


# Layout of the rendered matrix (public so tests can find the cells).
CELL = 72
MARGIN_LEFT = 150
MARGIN_TOP = 64


def cell_colour(fraction: float) -> tuple[int, int, int]:
    """Fill colour of a cell holding ``fraction`` of its row (white -> dark blue)."""
    f = min(max(float(fraction), 0.0), 1.0)
    return (round(255 - 225 * f), round(255 - 165 * f), round(255 - 75 * f))


def cell_box(row: int, col: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of cell (row, col)."""
    left, top = MARGIN_LEFT + col * CELL, MARGIN_TOP + row * CELL
    return left, top, left + CELL, top + CELL


def render_confusion_matrix(matrix: list[list[int]], labels: list[str]):
    """A PIL image of the confusion matrix: counts in cells shaded by their share of the row (true label)."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(labels)
    width, height = MARGIN_LEFT + n * CELL + 16, MARGIN_TOP + n * CELL + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has a single fixed-size default font
        font = ImageFont.load_default()
    draw.text((MARGIN_LEFT, 8), "predicted label", fill="black", font=font)
    draw.text((8, MARGIN_TOP - 22), "true label", fill="black", font=font)
    for j, name in enumerate(labels):
        draw.text((MARGIN_LEFT + j * CELL + 4, MARGIN_TOP - 22), _short(name, 9), fill="black", font=font)
    for i, name in enumerate(labels):
        draw.text((8, MARGIN_TOP + i * CELL + CELL // 2 - 8), _short(name, 17), fill="black", font=font)
        total = sum(matrix[i])
        for j in range(n):
            box = cell_box(i, j)
            fraction = matrix[i][j] / total if total else 0.0
            draw.rectangle(box, fill=cell_colour(fraction), outline=(160, 160, 160))
            text_colour = "white" if fraction > 0.5 else "black"
            draw.text(
                (box[0] + CELL // 2, box[1] + CELL // 2), str(matrix[i][j]), fill=text_colour, font=font, anchor="mm"
            )
    accuracy = sum(matrix[i][i] for i in range(n)) / max(1, sum(map(sum, matrix)))
    draw.text((MARGIN_LEFT, MARGIN_TOP + n * CELL + 12), f"accuracy {accuracy:.3f}", fill="black", font=font)
    return image


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 2] + ".."
