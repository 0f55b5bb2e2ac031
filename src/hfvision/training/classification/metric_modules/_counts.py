"""Shared numpy arithmetic of the bundled classification metrics (copied next to each script by `evaluate`)."""

from __future__ import annotations

import numpy as np

AVERAGES = ("macro", "micro", "weighted", None)


def confusion_counts(predictions, references, labels=None) -> tuple[np.ndarray, list[int]]:
    """Confusion matrix (rows: reference, columns: prediction) over ``labels`` (default: every label seen)."""
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    references = np.asarray(references, dtype=np.int64).reshape(-1)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions ({predictions.size}) and references ({references.size}) differ in length")
    if labels is None:
        labels = sorted(set(predictions.tolist()) | set(references.tolist()))
    labels = [int(x) for x in labels]
    n = len(labels)
    if n == 0:
        return np.zeros((0, 0), np.int64), labels
    label_array = np.asarray(labels, dtype=np.int64)
    order = np.argsort(label_array, kind="stable")
    ordered = label_array[order]

    def positions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(ordered, values), n - 1)
        return order[pos], ordered[pos] == values

    rows, valid_rows = positions(references)
    cols, valid_cols = positions(predictions)
    keep = valid_rows & valid_cols  # pairs involving a label outside ``labels`` are not counted
    matrix = np.bincount(rows[keep] * n + cols[keep], minlength=n * n).reshape(n, n)
    return matrix, labels


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # 0/0 is reported as 0.0 (scikit-learn's zero_division=0 convention), never NaN.
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "tp": tp, "predicted": predicted}


def averaged(matrix: np.ndarray, score: str, average: str | None):
    """``score`` in {precision, recall, f1} averaged the scikit-learn way (``None`` returns the per-class list)."""
    if average not in AVERAGES:
        raise ValueError(f"average={average!r} is not supported; use one of {AVERAGES}")
    s = per_class_scores(matrix)
    if average is None:
        return s[score].tolist()
    if average == "macro":
        return float(s[score].mean()) if s[score].size else 0.0
    if average == "weighted":
        total = s["support"].sum()
        return float((s[score] * s["support"]).sum() / total) if total else 0.0
    # micro: pooled counts; for single-label classification precision = recall = F1 = accuracy
    tp, predicted, support = s["tp"].sum(), s["predicted"].sum(), s["support"].sum()
    p = tp / predicted if predicted else 0.0
    r = tp / support if support else 0.0
    return float({"precision": p, "recall": r, "f1": (2 * p * r / (p + r)) if p + r else 0.0}[score])
