"""The simulated-user protocol, the two weight-free methods and the adapter for promptable predictors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pam_monai.evaluation.interactive import (
    PromptSegmenter,
    fill_between_slices,
    fixed_slices,
    largest_slice,
    random_walker_slices,
    run_fixed,
    simulate_corrections,
    slice_errors,
    slice_prompt,
    true_slices,
    worst_slice,
)
from pam_monai.evaluation.metrics import binary_dice


def ellipsoid(shape=(40, 44, 48), centre=(20, 22, 24), radii=(12, 14, 16)) -> np.ndarray:  # noqa: ANN001
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


class OnlyTheSlices:
    """A method that returns exactly the annotated slices (and counts its calls and resets)."""

    def __init__(self, shape: tuple[int, ...], axis: int) -> None:
        self.shape, self.axis, self.calls, self.resets = shape, axis, [], 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, slices):  # noqa: ANN001, ANN204
        self.calls.append(sorted(slices))
        return slice_prompt(self.shape, slices, self.axis) > 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_largest_and_fixed_slices_follow_the_object_along_the_axis(axis: int) -> None:
    truth = ellipsoid(centre=(18, 25, 30))
    centre = (18, 25, 30)[axis]
    assert largest_slice(truth, axis) == centre
    first, last = (centre - (12, 14, 16)[axis], centre + (12, 14, 16)[axis])
    assert fixed_slices(truth, axis) == [(centre + first) // 2, centre, -(-(centre + last) // 2)]


def test_fixed_slices_of_a_one_slice_object_is_that_slice() -> None:
    truth = np.zeros((10, 10, 10), dtype=bool)
    truth[2:5, 3:6, 7] = True
    assert fixed_slices(truth, 2) == [7]
    with pytest.raises(ValueError, match="empty"):
        largest_slice(np.zeros((4, 4, 4), dtype=bool), 2)


def test_worst_slice_counts_false_positives_and_negatives_on_slices_with_the_object() -> None:
    truth = np.zeros((8, 8, 10), dtype=bool)
    truth[2:6, 2:6, 2:8] = True
    prediction = truth.copy()
    prediction[2:6, 2:4, 3] = False  # 8 false negatives on slice 3
    prediction[0:2, 0:8, 5] = True  # 16 false positives on slice 5
    prediction[:, :, 9] = True  # 64 false positives on a slice without the object: no drawable correction
    errors = slice_errors(prediction, truth, 2)
    assert errors[3] == 8 and errors[5] == 16 and errors[9] == 64
    assert worst_slice(prediction, truth, 2) == 5
    assert worst_slice(prediction, truth, 2, annotated=[5]) == 3
    assert worst_slice(prediction, truth, 2, annotated=[3, 5]) is None
    assert worst_slice(truth, truth, 2) is None


@pytest.mark.parametrize("axis", [0, 2])
def test_the_user_corrects_the_worst_slice_at_every_step(axis: int) -> None:
    truth = ellipsoid()
    method = OnlyTheSlices(truth.shape, axis)
    trace = simulate_corrections(method, truth, axis, max_slices=4)
    areas = truth.sum(axis=tuple(a for a in range(3) if a != axis))
    # With only the drawn slices segmented, the worst slice is always the largest one not drawn yet.
    by_area = [int(k) for k in np.argsort(-areas, kind="stable")[:4]]
    assert trace.slices == by_area and method.resets == 1
    assert method.calls == [sorted(by_area[:n]) for n in range(1, 5)]
    expected = [2 * areas[by_area[:n]].sum() / (truth.sum() + areas[by_area[:n]].sum()) for n in range(1, 5)]
    np.testing.assert_allclose(trace.dice, expected)
    assert trace.dice_after(3) == trace.dice[2] and trace.dice_after(5) == trace.dice[3]
    assert len(trace.seconds) == 4 and len(trace.correction_seconds) == 3


def test_a_perfect_result_ends_the_session_and_keeps_its_dsc() -> None:
    truth = ellipsoid()
    trace = simulate_corrections(lambda slices: truth, truth, 2, max_slices=5)
    assert trace.dice == [1.0] and trace.dice_after(5) == 1.0 and trace.correction_seconds == []
    with pytest.raises(ValueError, match="max_slices"):
        simulate_corrections(lambda slices: truth, truth, 2, max_slices=0)


def test_the_fixed_protocol_gives_its_three_slices_at_once() -> None:
    truth = ellipsoid()
    method = OnlyTheSlices(truth.shape, 1)
    trace = run_fixed(method, truth, 1)
    assert method.calls == [fixed_slices(truth, 1)] and trace.slices == fixed_slices(truth, 1)
    assert method.resets == 1 and len(trace.dice) == 1 and 0 < trace.dice[0] < 1


@pytest.mark.parametrize("axis", [0, 2])
def test_fill_between_slices_interpolates_between_the_outermost_slices_only(axis: int) -> None:
    truth = ellipsoid()
    indices = fixed_slices(truth, axis)
    filled = fill_between_slices(true_slices(truth, axis, indices), truth.shape, axis, threads=1)
    moved_fill, moved_truth = np.moveaxis(filled, axis, 0), np.moveaxis(truth, axis, 0)
    inside = slice(indices[0], indices[-1] + 1)
    assert not moved_fill[: indices[0]].any() and not moved_fill[indices[-1] + 1 :].any()
    for k in indices:
        np.testing.assert_array_equal(moved_fill[k], moved_truth[k])
    assert binary_dice(moved_fill[inside], moved_truth[inside]) > 0.9
    between = (indices[0] + indices[1]) // 2
    assert moved_fill[between].sum() > 0.8 * moved_truth[between].sum()
    one = fill_between_slices(true_slices(truth, axis, indices[1:2]), truth.shape, axis)
    np.testing.assert_array_equal(one, slice_prompt(truth.shape, true_slices(truth, axis, indices[1:2]), axis) > 0)
    assert not fill_between_slices({3: np.zeros(truth.shape[1:], bool)}, truth.shape, 0).any()
    # masks that touch the slice's border fill up to it
    assert fill_between_slices({0: np.ones((4, 5), bool), 2: np.ones((4, 5), bool)}, (3, 4, 5), 0).all()


def test_the_random_walker_follows_the_image_from_several_slices_and_keeps_them() -> None:
    truth = ellipsoid()
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 5.0, truth.shape).astype(np.float32) + 100.0 * truth
    slices = true_slices(truth, 2, fixed_slices(truth, 2))
    walked = random_walker_slices(image, slices, 2)
    assert binary_dice(walked, truth) > 0.9
    # a drawn slice is kept even where the image disagrees with it
    slices[24] = np.zeros_like(slices[24])
    slices[24][5:9, 5:9] = True
    walked = random_walker_slices(image, slices, 2, max_voxels=20_000)
    np.testing.assert_array_equal(walked[:, :, 24], slices[24])


class FakePredictor:
    """Records what a PromptSegmenter sends: prompt volumes to segment(), new slices to refine()."""

    def __init__(self, with_refine: bool) -> None:
        self.segmented, self.refined = [], []
        if with_refine:
            self.refine = self._refine

    def segment(self, *, mask_prompt, axis):  # noqa: ANN001, ANN201
        self.segmented.append((mask_prompt.copy(), axis))
        return SimpleNamespace(labels=torch.as_tensor(mask_prompt.astype(np.int16)))

    def _refine(self, result, *, mask_slices):  # noqa: ANN001, ANN201
        marked = np.nonzero(mask_slices.any(axis=(0, 1)))[0].tolist()
        self.refined.append(marked)
        labels = result.labels.clone()
        for k in marked:
            labels[:, :, k] = torch.as_tensor(mask_slices[:, :, k].astype(np.int16))
        return SimpleNamespace(labels=labels)


def test_prompt_segmenter_prompts_all_slices_or_refines_with_the_new_one() -> None:
    truth = ellipsoid()
    plain = FakePredictor(with_refine=False)
    trace = simulate_corrections(PromptSegmenter(predictor=plain, shape=truth.shape, axis=2), truth, 2, max_slices=3)
    assert len(plain.segmented) == 3
    prompt, axis = plain.segmented[-1]
    assert axis == 2 and sorted(np.nonzero(prompt.any(axis=(0, 1)))[0].tolist()) == sorted(trace.slices)
    np.testing.assert_array_equal(prompt[:, :, trace.slices[0]] > 0, truth[:, :, trace.slices[0]])

    stateful = FakePredictor(with_refine=True)
    segmenter = PromptSegmenter(predictor=stateful, shape=truth.shape, axis=2, refine=True)
    again = simulate_corrections(segmenter, truth, 2, max_slices=3)
    assert again.slices == trace.slices and again.dice == trace.dice
    assert len(stateful.segmented) == 1 and stateful.refined == [[trace.slices[1]], [trace.slices[2]]]
    run_fixed(segmenter, truth, 2)  # a new object after reset(): segmented from all its slices
    assert len(stateful.segmented) == 2
    with pytest.raises(ValueError, match="refine"):
        PromptSegmenter(predictor=plain, shape=truth.shape, axis=2, refine=True)
