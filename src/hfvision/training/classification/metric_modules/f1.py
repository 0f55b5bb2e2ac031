"""F1 for single-label classification: hfvision's offline `evaluate` module (numpy, no download)."""

import datasets
import evaluate

from ._counts import averaged, confusion_counts

_DESCRIPTION = """
F1 of each class is the harmonic mean of precision and recall, 2 * P * R / (P + R), computed one-vs-rest from the confusion matrix.
Classes with an empty denominator score 0.0 (scikit-learn's zero_division=0).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): ground-truth class ids.
    labels (`list` of `int`, *optional*): class ids to score, in this order (default: every id seen). Pass all
        ids so that a class absent from both lists still counts in the macro average.
    average (`str` or `None`, *optional*, defaults to `"macro"`): "macro" (unweighted mean over classes),
        "weighted" (mean weighted by support), "micro" (pooled counts) or None (one score per class, in `labels` order).
        Unlike the Hub's metric of the same name, the default is "macro", not "binary".
Returns:
    f1 (`float`, or `list` of `float` when `average=None`).
Example:
    >>> f1 = evaluate.load("path/to/f1.py")
    >>> f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], average=None)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
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
        return {"f1": averaged(matrix, "f1", average)}
