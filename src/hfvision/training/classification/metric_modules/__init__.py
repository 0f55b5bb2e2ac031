"""Classification metrics as a local `evaluate` module (no Hub download, no scikit-learn).

``classification.py`` here is an `evaluate` metric script: ``evaluate.load(path)`` loads it offline, exactly like a
Hub metric, and one ``compute`` returns accuracy, precision, recall, F1 (keys as the Hub metrics of the same names)
and the confusion matrix.

>>> import evaluate
>>> metric = evaluate.load(CLASSIFICATION_METRIC)
>>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
0.6666666666666666
"""

from __future__ import annotations

from pathlib import Path

CLASSIFICATION_METRIC = str(Path(__file__).with_name("classification.py"))
