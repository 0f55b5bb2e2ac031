"""The bundled evaluate metrics agree with scikit-learn; reports and the confusion-matrix PNG hold the right numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hfvision.training.classification.metric_modules import CLASSIFICATION_METRIC
from hfvision.training.classification.metrics import (
    cell_box,
    cell_colour,
    classification_report,
    compute_scores,
    load_metric,
    save_report,
)


def test_local_modules_load_through_evaluate_offline():
    import evaluate

    module = evaluate.load(CLASSIFICATION_METRIC)  # HF_HUB_OFFLINE=1 in the test session: no download possible
    assert isinstance(module, evaluate.Metric)
    out = module.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2], labels=[0, 1, 2, 3])
    assert out["accuracy"] == 0.75
    assert out["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert out["precision"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)  # label 3: no predictions -> 0, not NaN
    with pytest.raises(ValueError, match="average='binary' is not supported"):
        module.compute(predictions=[0], references=[0], average="binary")


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_match_scikit_learn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n_labels = 4
    refs = rng.integers(0, 3, size=60)  # label 3 never occurs: zero support, zero predictions
    preds = np.where(rng.random(60) < 0.6, refs, rng.integers(0, 3, size=60))
    labels = list(range(n_labels))
    scores = compute_scores(preds, refs, n_labels)
    assert scores["accuracy"] == pytest.approx(sk.accuracy_score(refs, preds))
    for name, fn in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
        assert scores[f"{name}_macro"] == pytest.approx(
            fn(refs, preds, labels=labels, average="macro", zero_division=0)
        )
        np.testing.assert_allclose(
            scores[f"{name}_per_class"], fn(refs, preds, labels=labels, average=None, zero_division=0)
        )
        for average in ("micro", "weighted"):
            ours = load_metric().compute(predictions=preds, references=refs, labels=labels, average=average)[name]
            assert ours == pytest.approx(fn(refs, preds, labels=labels, average=average, zero_division=0))
    np.testing.assert_array_equal(scores["confusion_matrix"], sk.confusion_matrix(refs, preds, labels=labels))


def test_report_and_groups_match_numpy(tmp_path):
    rng = np.random.default_rng(3)
    refs = rng.integers(0, 2, size=40)
    preds = np.where(rng.random(40) < 0.8, refs, 1 - refs)
    groups = rng.choice(["a", "b", "c"], size=40).tolist()
    report = classification_report(preds.tolist(), refs.tolist(), ["female", "male"], groups)

    matrix = np.zeros((2, 2), int)
    np.add.at(matrix, (refs, preds), 1)
    assert report["confusion_matrix"]["matrix"] == matrix.tolist()
    assert report["accuracy"] == pytest.approx((preds == refs).mean())
    assert report["per_class"]["male"]["support"] == int((refs == 1).sum())
    assert report["per_class"]["male"]["recall"] == pytest.approx(matrix[1, 1] / matrix[1].sum())
    accs = {}
    for g in ("a", "b", "c"):
        mask = np.array(groups) == g
        accs[g] = (preds[mask] == refs[mask]).mean()
        assert report["per_group"][g]["accuracy"] == pytest.approx(accs[g])
        assert report["per_group"][g]["num_samples"] == int(mask.sum())
    assert report["group_accuracy_gap"] == pytest.approx(max(accs.values()) - min(accs.values()))

    paths = save_report(report, tmp_path)
    assert json.loads(paths["json"].read_text()) == report
    from PIL import Image

    image = Image.open(paths["png"]).convert("RGB")
    for i in range(2):
        for j in range(2):
            left, top, _, _ = cell_box(i, j)
            # a pixel near the cell's corner: fill colour, away from the centred count text and the outline
            expected = cell_colour(matrix[i, j] / matrix[i].sum())
            assert image.getpixel((left + 4, top + 4)) == expected, (i, j)
