from __future__ import annotations

import numpy as np
import pytest
import torch

from pam_monai.prompts import (
    Box3DPrompt,
    PromptError,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    place_on_grid,
    require_contrast,
    validate_box,
)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mask_prompt_splits_labels_on_one_slice(axis: int) -> None:
    volume = np.zeros((20, 22, 24), dtype=np.int16)
    plane = np.moveaxis(volume, axis, 0)[7]
    plane[2:5, 2:5] = 1
    plane[10:12, 10:15] = 3
    prompts = mask_prompts_from_volume(volume, axis)
    assert [p.label for p in prompts] == [1, 3]
    assert all(p.slice_index == 7 for p in prompts)
    assert int(prompts[1].mask.sum()) == 10


def test_mask_prompt_on_several_slices_per_label() -> None:
    volume = np.zeros((20, 22, 24), dtype=np.int16)
    volume[2:5, 2:5, 3] = 1
    volume[2:6, 2:5, 9] = 1
    volume[10:12, 10:15, 9] = 2
    volume[10:13, 10:15, 15] = 2
    prompts = mask_prompts_from_volume(volume, 2)
    assert [(p.label, p.slice_index, int(p.mask.sum())) for p in prompts] == [
        (1, 3, 9),
        (1, 9, 12),
        (2, 9, 10),
        (2, 15, 15),
    ]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda v: v, "empty"),
        (lambda v: v.__setitem__((0, 0, 0), -1) or v, "negative"),
        (lambda v: v[0], "3D"),
    ],
)
def test_bad_mask_prompts(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(PromptError, match=message):
        mask_prompts_from_volume(make(np.zeros((6, 6, 6), dtype=np.int16)), 2)


def test_nan_prompt_is_rejected() -> None:
    volume = np.zeros((6, 6, 6))
    volume[1, 1, 1] = np.nan
    with pytest.raises(PromptError, match="NaN"):
        mask_prompts_from_volume(volume, 2)


@pytest.mark.parametrize(
    "box,index,message",
    [
        ((5, 5, 2, 9), 1, "inverted"),
        ((5, 5, 5, 9), 1, "zero area"),
        ((0, 0, 10, 30), 1, "outside"),
        ((-1, 0, 5, 5), 1, "outside"),
        ((0, 0, 5, 5), 12, "out of range"),
        ((0, 0, 5), 1, "4 numbers"),
    ],
)
def test_bad_boxes(box: tuple, index: int, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        validate_box(box, index, (20, 25, 12), axis=2)


def test_box3d_seeds_spread_over_the_box() -> None:
    seeds = box3d_seed_boxes(Box3DPrompt((2, 3, 10), (12, 15, 30)), (20, 20, 40), axis=2)
    assert [s.slice_index for s in seeds] == [15, 20, 25]
    assert seeds[0].box == (2, 3, 12, 15)
    seeds = box3d_seed_boxes(Box3DPrompt((2, 3, 10), (12, 15, 30)), (20, 20, 40), axis=0)
    assert [s.slice_index for s in seeds] == [4, 7, 10] and seeds[0].box == (3, 10, 15, 30)
    with pytest.raises(PromptError, match="outside"):
        box3d_seed_boxes(Box3DPrompt((2, 3, 10), (12, 15, 40)), (20, 20, 40), axis=2)


@pytest.mark.parametrize("fill", [0.0, -1024.0, 3.5])
def test_a_prompt_on_a_blank_slice_is_rejected(fill: float) -> None:
    plane = torch.full((30, 40), fill)
    with pytest.raises(PromptError, match="slice 7 is blank around the prompt"):
        require_contrast(plane, (5, 5, 20, 30), 7)


@pytest.mark.parametrize(
    "box,blank",
    [
        ((10, 10, 19, 19), False),  # a tight box on a flat square: its edge lies in the margin
        ((12, 12, 17, 17), True),  # well inside the flat square: nothing but one value
        ((0, 0, 5, 5), False),  # noise around the square
    ],
)
def test_contrast_is_looked_for_around_the_box(box: tuple[int, int, int, int], blank: bool) -> None:
    plane = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (30, 30)).astype(np.float32))
    plane[10:20, 10:20] = 50.0
    if blank:
        with pytest.raises(PromptError, match="blank"):
            require_contrast(plane, box, 3)
    else:
        require_contrast(plane, box, 3)


AFFINE = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])


def _shifted(offset: tuple[float, float, float], affine: np.ndarray = AFFINE) -> np.ndarray:
    moved = affine.copy()
    moved[:3, 3] = (affine @ np.array([*offset, 1.0]))[:3]
    return moved


def test_a_prompt_on_the_image_grid_is_returned_as_it_is() -> None:
    prompt = torch.zeros(20, 22, 24, dtype=torch.uint8)
    prompt[5:8, 5:9, 7] = 1
    assert place_on_grid(prompt, AFFINE, (20, 22, 24), AFFINE) is prompt


@pytest.mark.parametrize("offset", [(0, 0, 7), (3, 4, 7), (12, 0, 7)])
def test_a_cropped_prompt_is_placed_at_its_offset(offset: tuple[int, int, int]) -> None:
    crop = torch.zeros(8, 9, 1, dtype=torch.uint8)
    crop[1:4, 2:5, 0] = 2
    placed = place_on_grid(crop, _shifted(offset), (20, 22, 24), AFFINE)
    expected = torch.zeros(20, 22, 24, dtype=torch.uint8)
    i, j, k = offset
    expected[i + 1 : i + 4, j + 2 : j + 5, k] = 2
    assert torch.equal(placed, expected)


@pytest.mark.parametrize(
    "prompt_affine,message",
    [
        (AFFINE @ np.diag([2.0, 1.0, 1.0, 1.0]), "differs from the image's"),
        (_shifted((0.5, 0, 0)), "differs from the image's"),
        (_shifted((-1, 0, 0)), "part of the prompt lies outside"),
        (_shifted((40, 0, 0)), "entirely outside"),
    ],
)
def test_prompts_on_other_grids_are_refused(prompt_affine: np.ndarray, message: str) -> None:
    crop = torch.ones(8, 9, 1, dtype=torch.uint8)
    with pytest.raises(PromptError, match=message):
        place_on_grid(crop, prompt_affine, (20, 22, 24), AFFINE)
