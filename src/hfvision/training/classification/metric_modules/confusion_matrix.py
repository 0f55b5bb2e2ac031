"""Confusion matrix for single-label classification: hfvision's offline `evaluate` module (numpy, no download)."""

import datasets
import evaluate

from ._counts import confusion_counts

_DESCRIPTION = """
The confusion matrix counts, for every pair of classes (i, j), the samples whose reference is i and whose prediction
is j: rows are references, columns are predictions (scikit-learn's convention).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): ground-truth class ids.
    labels (`list` of `int`, *optional*): class ids indexing rows and columns, in this order (default: every id seen).
Returns:
    confusion_matrix (`list` of `list` of `int`): shape (len(labels), len(labels)).
Example:
    >>> confusion_matrix = evaluate.load("path/to/confusion_matrix.py")
    >>> confusion_matrix.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'confusion_matrix': [[2, 1], [0, 1]]}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConfusionMatrix(evaluate.Metric):
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
        return {"confusion_matrix": matrix.tolist()}
