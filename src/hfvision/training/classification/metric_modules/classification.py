"""Single-label classification metrics: hfvision's offline `evaluate` module (numpy, no download).

One module returns accuracy, precision, recall, F1 and the confusion matrix from a single confusion-matrix count,
so the Trainer's evaluation and the report compute every score in one pass.
"""

import datasets
import evaluate
import numpy as np

AVERAGES = ("macro", "micro", "weighted", None)

_DESCRIPTION = """
Accuracy, precision, recall, F1 (one-vs-rest per class, then averaged) and the confusion matrix of single-label
predictions. Classes with an empty denominator score 0.0 (scikit-learn's zero_division=0), never NaN.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): ground-truth class ids.
    labels (`list` of `int`, *optional*): class ids to score, in this order (default: every id seen). Pass all
        ids so that a class absent from both lists still counts in the macro average. Pairs involving an id outside
        `labels` are not counted.
    average (`str` or `None`, *optional*, defaults to `"macro"`): how precision, recall and F1 are averaged:
        "macro" (unweighted mean over classes), "weighted" (mean weighted by support), "micro" (pooled counts) or
        None (one score per class, in `labels` order).
Returns:
    accuracy (`float`), precision, recall, f1 (`float`, or `list` of `float` when `average=None`),
    confusion_matrix (`list` of `list` of `int`: rows are references, columns predictions, in `labels` order).
Example:
    >>> metric = evaluate.load("path/to/classification.py")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])["accuracy"]
    0.75
"""


def confusion_counts(predictions, references, labels=None) -> tuple[np.ndarray, list[int]]:
    """Confusion matrix (rows: reference, columns: prediction) over ``labels`` (default: every label seen)."""
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    references = np.asarray(references, dtype=np.int64).reshape(-1)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions ({predictions.size}) and references ({references.size}) differ in length")
    if labels is None:
        labels = sorted(set(predictions.tolist()) | set(references.tolist()))
    labels = [int(x) for x in labels]
    index = {label: i for i, label in enumerate(labels)}
    rows = np.array([index.get(r, -1) for r in references.tolist()], dtype=np.int64)
    cols = np.array([index.get(p, -1) for p in predictions.tolist()], dtype=np.int64)
    keep = (rows >= 0) & (cols >= 0)
    n = len(labels)
    matrix = np.bincount(rows[keep] * n + cols[keep], minlength=n * n).reshape(n, n)
    return matrix, labels


def _divide(num, den):
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def scores_from_counts(matrix: np.ndarray, average: str | None = "macro") -> dict:
    """Accuracy and ``average``-d precision / recall / F1 from a confusion matrix."""
    if average not in AVERAGES:
        raise ValueError(f"average={average!r} is not supported; use one of {AVERAGES}")
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    total = support.sum()
    out = {"accuracy": float(tp.sum() / total) if total else 0.0}
    if average == "micro":  # pooled counts
        tp, predicted, support = tp.sum(keepdims=True), predicted.sum(keepdims=True), support.sum(keepdims=True)
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    per_class = {"precision": precision, "recall": recall, "f1": _divide(2 * precision * recall, precision + recall)}
    for name, values in per_class.items():
        if average is None:
            out[name] = values.tolist()
        elif average == "weighted":
            out[name] = float((values * support).sum() / total) if total else 0.0
        else:  # macro, or micro over the single pooled "class"
            out[name] = float(values.mean()) if values.size else 0.0
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None, average="macro"):
        matrix, _ = confusion_counts(predictions, references, labels)
        return {**scores_from_counts(matrix, average), "confusion_matrix": matrix.tolist()}
