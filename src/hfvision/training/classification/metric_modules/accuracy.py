"""Accuracy for single-label classification: hfvision's offline `evaluate` module (numpy, no download)."""

import datasets
import evaluate

from ._counts import confusion_counts

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among all predictions: (TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): ground-truth class ids.
    labels (`list` of `int`, *optional*): restrict the count to these class ids (pairs outside are ignored).
Returns:
    accuracy (`float`): between 0 and 1 (0.0 when there is nothing to count).
Example:
    >>> accuracy = evaluate.load("path/to/accuracy.py")
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        matrix, _ = confusion_counts(predictions, references, labels)
        total = matrix.sum()
        return {"accuracy": float(matrix.trace() / total) if total else 0.0}
