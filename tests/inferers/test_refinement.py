"""Early stop of a correction's recomputation (pam_monai.inferers.refinement): far slices that agree are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OraclePropMask, object_volume

from pam_monai.errors import PromptError
from pam_monai.inferers import PropagationInferer, refine_object
from pam_monai.inferers.refinement import AGREE_SLICES, agreeing_stop

SHAPE = (48, 48, 80)


def rod() -> np.ndarray:
    """Label 1 on slices 10..69: a disc of radius 12."""
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = np.zeros(SHAPE, dtype=np.int16)
    truth[:, :, 10:70][(rows - 24) ** 2 + (cols - 24) ** 2 <= 144] = 1
    return truth


def refine(previous: np.ndarray, truth: np.ndarray, corrected: int, **kwargs) -> tuple:  # noqa: ANN003
    """Correct ``previous`` (guide on slice 20) with the true mask of slice ``corrected``; the oracle network."""
    inferer = PropagationInferer(thickness_mm=8)
    labels, guides, ranges, predicted = refine_object(
        inferer,
        torch.from_numpy(object_volume(truth)),
        OraclePropMask(),
        torch.from_numpy(previous),
        1,
        {20: torch.from_numpy(previous[..., 20] == 1)},
        {corrected: torch.from_numpy(truth[..., corrected] == 1)},
        axis=2,
        spacing=(1.0, 1.0, 1.0),
        **kwargs,
    )
    return labels.numpy(), guides, ranges, predicted


def test_agreeing_stop_finds_the_first_run_of_agreeing_slices() -> None:
    new = torch.zeros((10, 4, 4), dtype=torch.bool)
    old = new.clone()
    new[:, 1:3, 1:3] = True
    old[:, 1:3, 1:3] = True
    old[[2, 6], 0, 0] = True  # Dice 8 / 9 < 0.95 on slices 2 and 6
    assert agreeing_stop(new, old, 0, 1, 0.95, 3) == 5  # runs 0-1 (too short), 3-5
    assert agreeing_stop(new, old, 9, -1, 0.95, 3) == 7
    assert agreeing_stop(new, old, 0, 1, 0.95, 11) is None
    assert agreeing_stop(new, old, 0, 1, 0.85, 3) == 2
    empty = torch.zeros((3, 4, 4), dtype=torch.bool)
    assert agreeing_stop(empty, empty.clone(), 0, 1, 0.95, 3) == 2  # two empty masks agree


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_far_slices_that_agree_are_kept_voxel_for_voxel() -> None:
    truth = rod()
    # a previous result made the same way (the whole stretch beyond the guide on 20 recomputed from slice 28) ...
    full, _, full_ranges, full_predicted = refine(truth, truth, 28, agree_dice=None)
    assert full_ranges == [(21, 79)]
    previous = full.copy()
    previous[0, 0, 10:70] = 1  # ... with one stray voxel per slice: still Dice > 0.99 with the recomputed slices
    out, guides, ranges, predicted = refine(previous, truth, 28)
    assert sorted(guides) == [20, 28]
    # the front stops AGREE_SLICES slices beyond the correction on each side; the rest is the previous result
    low, high = 28 - AGREE_SLICES, 28 + AGREE_SLICES
    assert ranges == [(low, high)]
    assert np.array_equal(out[..., :low], previous[..., :low])
    assert np.array_equal(out[..., high + 1 :], previous[..., high + 1 :])
    assert not (out[0, 0, low : high + 1] == 1).any()  # recomputed there: the stray voxels are gone
    assert predicted < full_predicted
    # without early stop the whole stretch is recomputed again: every stray voxel beyond slice 20 goes
    again, _, _, _ = refine(previous, truth, 28, agree_dice=None)
    assert not (again[0, 0, 21:] == 1).any() and dice(again[..., 21:] == 1, full[..., 21:] == 1) > 0.99


def test_a_changed_result_is_recomputed_until_it_agrees_again() -> None:
    truth = rod()
    previous, _, _, _ = refine(truth, truth, 28, agree_dice=None)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    previous[:, :, 25:61][(rows - 24) ** 2 + (cols - 24) ** 2 > 49] = 0  # too thin on slices 25..60
    out, _, ranges, predicted = refine(previous, truth, 28)
    # below, slices 24..22 agree at once; above, two windows disagree and the front runs on to the volume's end
    assert ranges == [(22, 79)]
    assert np.array_equal(out[..., :22], previous[..., :22])
    thin, fixed = previous[..., 25:61] == 1, out[..., 25:61] == 1
    assert dice(fixed, truth[..., 25:61] == 1) > 0.9 > dice(thin, truth[..., 25:61] == 1)
    full, _, _, full_predicted = refine(previous, truth, 28, agree_dice=None)
    assert dice(out[..., 29:] == 1, full[..., 29:] == 1) > 0.99
    assert predicted < 2 * full_predicted  # the windows that disagreed cost less than recomputing twice


def test_early_stop_settings_are_checked() -> None:
    truth = rod()
    with pytest.raises(PromptError, match="agree_slices"):
        refine(truth, truth, 28, agree_slices=0)
