"""Box prompts on slices: the cases, the first-mask scores and their summary, on a small generated object."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask

from pam_monai.evaluation.box_prompts import (
    atlas_objects,
    box_prompt_cases,
    evaluate_first_masks,
    first_mask_scores,
    summarise_first_masks,
)
from pam_monai.inferers.box2masker import Box2Masker


def ellipsoid_volume(shape: tuple[int, int, int] = (40, 48, 36)) -> tuple[torch.Tensor, np.ndarray]:
    """A bright ellipsoid (largest cross-sections through its centre) in a dark noisy volume."""
    grid = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    centre, radii = (20, 22, 17), (9, 12, 7)
    truth = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    rng = np.random.default_rng(0)
    image = np.where(truth, 200.0, 20.0) + rng.normal(0, 3, shape)
    return torch.as_tensor(image, dtype=torch.float32), truth


def objects() -> list:
    image, truth = ellipsoid_volume()
    return [("generated", image, {"ellipsoid": truth, "empty": np.zeros_like(truth)})]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cases_are_the_largest_slice_and_its_tight_box(axis: int) -> None:
    [case] = box_prompt_cases(objects(), axes=(axis,))  # the empty object is skipped
    image, truth = ellipsoid_volume()
    assert case.slice_index == (20, 22, 17)[axis] and case.axis == axis and case.name == "ellipsoid"
    assert np.array_equal(case.truth, np.take(truth, case.slice_index, axis=axis))
    rows, cols = np.nonzero(case.truth)
    assert case.box == (rows.min(), cols.min(), rows.max(), cols.max())
    assert torch.equal(case.image, torch.as_tensor(np.take(image.numpy(), case.slice_index, axis=axis)))


def test_scores_of_a_perfect_and_a_half_mask() -> None:
    truth = np.zeros((20, 20), dtype=bool)
    truth[5:15, 4:12] = True
    box = (5, 4, 14, 11)
    perfect = first_mask_scores(truth, truth, box)
    assert perfect["dsc"] == 1.0 and perfect["edges_touched"] == 4 and perfect["whole_box"] == 1.0
    half = truth.copy()
    half[10:] = False  # the top half: misses the bottom edge
    scores = first_mask_scores(half, truth, box)
    assert scores["dsc"] == pytest.approx(2 * 40 / 120) and scores["sensitivity"] == 0.5
    assert scores["precision"] == 1.0 and scores["area_ratio"] == 0.5 and scores["edges_touched"] == 3
    empty = first_mask_scores(np.zeros_like(truth), truth, box)
    assert empty["dsc"] == 0.0 and empty["precision"] == 0.0 and empty["edges_touched"] == 0
    with pytest.raises(ValueError, match="same shape"):
        first_mask_scores(truth[:10], truth, box)


def test_oracle_first_masks_match_the_truth_and_summarise_per_axis() -> None:
    cases = box_prompt_cases(objects())
    rows = evaluate_first_masks(cases, Box2Masker(), OracleBox2Mask())
    assert len(rows) == 3 and all(r["dsc"] > 0.9 and r["edges_touched"] == 4 for r in rows)
    per_axis = summarise_first_masks(rows, ("axis",))
    assert [r["axis"] for r in per_axis] == [0, 1, 2] and all(r["objects"] == 1 for r in per_axis)
    [overall] = summarise_first_masks(rows)
    assert overall["objects"] == 3 and overall["dsc"] == pytest.approx(np.mean([r["dsc"] for r in rows]))


def test_a_masker_that_fills_the_box_scores_lower() -> None:
    def whole_box(image: torch.Tensor, network: object, box: tuple[int, int, int, int]) -> torch.Tensor:
        mask = torch.zeros(image.shape, dtype=torch.bool)
        mask[box[0] : box[2] + 1, box[1] : box[3] + 1] = True
        return mask

    rows = evaluate_first_masks(box_prompt_cases(objects()), whole_box, OracleBox2Mask())
    # an ellipse fills pi / 4 of its box
    assert all(r["whole_box"] == 1.0 and 0.8 < r["dsc"] < 0.9 and r["area_ratio"] > 1.2 for r in rows)


def test_atlas_objects_refuses_a_structure_outside_the_test_set() -> None:
    with pytest.raises(ValueError, match="no atlas test structure"):
        next(iter(atlas_objects(["3rd-Ventricle"])))
