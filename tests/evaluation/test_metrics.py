"""Per-object metrics: overlap counts against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pam_monai.evaluation.metrics import object_metrics


def _boxes(shape: tuple[int, int, int], truth: tuple[slice, ...], prediction: tuple[slice, ...]):
    t, p = np.zeros(shape, bool), np.zeros(shape, bool)
    t[truth], p[prediction] = True, True
    return p, t


@pytest.mark.parametrize(
    ("prediction", "sensitivity", "precision"),
    [
        ((slice(2, 6), slice(2, 6), slice(2, 6)), 1.0, 1.0),  # exact
        ((slice(2, 4), slice(2, 6), slice(2, 6)), 0.5, 1.0),  # too small: half the object
        ((slice(2, 10), slice(2, 6), slice(2, 6)), 1.0, 0.5),  # too large: twice the object
        ((slice(4, 8), slice(2, 6), slice(2, 6)), 0.5, 0.5),  # shifted by half
    ],
)
def test_sensitivity_and_precision(prediction: tuple[slice, ...], sensitivity: float, precision: float) -> None:
    p, t = _boxes((12, 12, 12), (slice(2, 6), slice(2, 6), slice(2, 6)), prediction)
    scores = object_metrics(p, t, (1.0, 1.0, 1.0))
    assert scores["sensitivity"] == pytest.approx(sensitivity)
    assert scores["precision"] == pytest.approx(precision)
    assert scores["dsc"] == pytest.approx(2 * sensitivity * precision / (sensitivity + precision))


def test_empty_prediction_has_zero_precision() -> None:
    p, t = _boxes((8, 8, 8), (slice(2, 5), slice(2, 5), slice(2, 5)), (slice(0, 0),) * 3)
    scores = object_metrics(p, t, (1.0, 1.0, 1.0))
    assert scores["precision"] == 0.0 and scores["sensitivity"] == 0.0 and np.isnan(scores["hd95"])
