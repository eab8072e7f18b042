"""Corrections with state: PAMPredictor.segment / refine / undo, and prompts that carry a previous result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, object_volume

from pam_monai.errors import PromptError, SessionError
from pam_monai.predictor import PAMPredictor
from pam_monai.prompts import parse_prompt

SHAPE = (64, 64, 80)


def disc(radius: float, centre: tuple[float, float] = (32, 32)) -> np.ndarray:
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.fixture
def scene() -> tuple[PAMPredictor, np.ndarray, np.ndarray]:
    """A rod (label 1, slices 10..69) and a small second object (label 2); a previous result whose rod is too
    thin on slices 25..60, with its guides on slices 20, 45 and 65."""
    truth = np.zeros(SHAPE, dtype=np.int16)
    truth[:, :, 10:70][disc(14)] = 1
    truth[:, :, 30:40][disc(5, (8, 8))] = 2
    predictor = PAMPredictor(propmask=OraclePropMask(), box2mask=OracleBox2Mask(), inferer=None)
    predictor.inferer.thickness_mm = 8
    predictor.set_image(torch.from_numpy(object_volume(truth)))
    previous = truth.copy()
    thin = np.zeros(SHAPE, dtype=bool)
    thin[:, :, 25:61] = (disc(14) & ~disc(9))[:, :, None]
    previous[thin] = 0
    return predictor, truth, previous


def test_a_correction_recomputes_only_between_its_neighbouring_guides(scene) -> None:  # noqa: ANN001
    predictor, truth, previous = scene
    start = predictor.open_session(previous, axis=2, guides={1: [20, 45, 65]})
    assert start.prompt_slices == {1: [20, 45, 65], 2: [int(np.argmax((previous == 2).sum(axis=(0, 1))))]}
    correction = np.zeros(SHAPE, dtype=np.int16)
    correction[..., 35] = truth[..., 35]
    refined = predictor.refine(start, mask_slices=correction)
    out = refined.labels.numpy()
    outside = [k for k in range(SHAPE[2]) if not 20 < k < 45]
    assert np.array_equal(out[..., outside], previous[..., outside])  # voxel for voxel, label 2 included
    assert np.array_equal(out[..., 35] == 1, truth[..., 35] == 1)  # the corrected slice keeps its mask
    assert (
        dice(out[..., 21:45] == 1, truth[..., 21:45] == 1)
        > 0.9
        > dice(previous[..., 21:45] == 1, truth[..., 21:45] == 1)
    )
    assert refined.prompt_slices[1] == [20, 35, 45, 65] and refined.slices_predicted > 0
    # Undo goes back exactly; then there is nothing left to undo.
    assert np.array_equal(predictor.undo().labels.numpy(), previous)
    assert predictor.sessions[1].guides.keys() == {20, 45, 65}
    with pytest.raises(SessionError, match="nothing to undo"):
        predictor.undo()


def test_an_outermost_correction_recomputes_beyond_it(scene) -> None:  # noqa: ANN001
    predictor, truth, previous = scene
    start = predictor.open_session(previous, axis=2, guides={1: [20, 45]})
    correction = np.zeros(SHAPE, dtype=np.int16)
    correction[..., 58] = truth[..., 58]
    out = predictor.refine(start, mask_slices=correction).labels.numpy()
    assert np.array_equal(out[..., :46], previous[..., :46])
    # Between the kept guide 45 (the previous, too thin mask) and the new one, the shape prior between drawn guides
    # holds the result between the two outlines; beyond the new guide propagation alone finds the rod.
    between = dice(out[..., 46:58] == 1, truth[..., 46:58] == 1)
    assert between > dice(previous[..., 46:58] == 1, truth[..., 46:58] == 1) + 0.2
    assert dice(out[..., 58:] == 1, truth[..., 58:] == 1) > 0.9
    covered = np.nonzero((out == 1).any(axis=(0, 1)))[0]
    assert covered[-1] == 69  # propagation from the new guide found the rod's end


def test_clicks_edit_the_current_slice_and_steps_undo_one_by_one(scene) -> None:  # noqa: ANN001
    predictor, truth, previous = scene
    start = predictor.open_session(previous, axis=2, guides={1: [20, 45, 65]})
    # A foreground click on the missing ring of slice 55 (row 32 + 11): the slice mask grows to the rod's edge.
    first = predictor.refine(start, clicks=[(43, 32, 55, 1)])
    assert dice(first.labels.numpy()[..., 55] == 1, truth[..., 55] == 1) > 0.9
    assert np.array_equal(first.labels.numpy()[..., :46], previous[..., :46])
    second = predictor.refine(first, box=(17, 17, 47, 47), slice_index=30)
    assert 30 in second.prompt_slices[1] and 55 in second.prompt_slices[1]
    assert np.array_equal(predictor.undo().labels, first.labels)
    assert np.array_equal(predictor.undo().labels.numpy(), previous)


def test_segment_opens_the_session_and_prompt_runs_parsed_requests(scene) -> None:  # noqa: ANN001
    predictor, truth, previous = scene
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[..., 35] = truth[..., 35]
    result = predictor.prompt(parse_prompt({"mask": "unused.nii.gz"}) | {"mask_prompt": mask})
    assert predictor.sessions.keys() == {1, 2} and result.prompt_slices == {1: [35], 2: [35]}
    before = result.labels.clone()
    refined = predictor.prompt({"axis": 2, "clicks": [(32, 32, 12, -1)], "label": 1})  # background on the rod
    assert not bool((refined.labels[..., 12] == 1).any())  # the whole component goes: no positive evidence
    assert torch.equal(refined.labels[..., 35:], before[..., 35:])  # beyond the guide at 35: kept
    kept = refined.labels[..., 13:35].numpy() == 1
    assert dice(kept, before[..., 13:35].numpy() == 1) > 0.95  # recomputed from that guide as before
    args = {"axis": 2, "previous": previous, "clicks": [(43, 32, 55, 1)]}
    assert dice(predictor.prompt(args).labels.numpy()[..., 55] == 1, truth[..., 55] == 1) > 0.9


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"clicks": [(10, 10, 80, 1)]}, PromptError, "outside the image"),
        ({"clicks": []}, PromptError, "empty"),
        ({"box": (10, 10, 30, 30), "slice_index": 95}, PromptError, "out of range"),
        ({"mask_slices": np.zeros(SHAPE)}, PromptError, "empty"),
        ({"mask_slices": np.zeros((64, 64, 81))}, PromptError, "grid"),
        ({"clicks": [(10, 10, 40, 1)], "label": 3}, SessionError, "label 3, which the result does not have"),
        ({}, PromptError, "empty"),
    ],
)
def test_bad_corrections_are_one_line_errors_and_change_nothing(scene, kwargs, error, message) -> None:  # noqa: ANN001
    predictor, _, previous = scene
    start = predictor.open_session(previous, axis=2)
    with pytest.raises(error, match=message) as raised:
        predictor.refine(start, **kwargs)
    assert "\n" not in str(raised.value)
    with pytest.raises(SessionError, match="nothing to undo"):
        predictor.undo()
    with pytest.raises(PromptError, match="grid"):
        predictor.open_session(previous[:, :, :-1])
