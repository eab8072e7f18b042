"""The random walker behind the weight-free baseline and PAM's second opinion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ellipsoid, object_volume

from pam_monai.inferers.random_walker import extent, prompt_planes, random_walker_probability
from pam_monai.prompts.core import MaskPrompt

SHAPE = (48, 40, 44)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def walked(volume: np.ndarray, probability: np.ndarray, region: tuple[slice, slice, slice]) -> np.ndarray:
    out = np.zeros(volume.shape, dtype=bool)
    out[region] = probability > 0.5
    return out


@pytest.mark.parametrize("max_voxels,least_dice", [(None, 0.9), (4_000, 0.85)])
def test_finds_a_bright_object_from_one_slice(max_voxels: int | None, least_dice: float) -> None:
    truth = ellipsoid(SHAPE, (24, 20, 22), (12, 9, 10))
    volume = object_volume(truth)
    probability, region = random_walker_probability(volume, [(24, truth[24])], max_voxels=max_voxels)
    assert probability.shape == tuple(s.stop - s.start for s in region)
    assert probability.dtype == np.float32 and 0.0 <= probability.min() and probability.max() <= 1.0
    assert dice(walked(volume, probability, region), truth) > least_dice


def test_coarse_grid_keeps_the_region_and_walks_fewer_voxels() -> None:
    truth = ellipsoid(SHAPE, (24, 20, 22), (12, 9, 10))
    volume = object_volume(truth)
    fine, fine_region = random_walker_probability(volume, [(24, truth[24])])
    coarse, coarse_region = random_walker_probability(volume, [(24, truth[24])], max_voxels=fine.size // 8)
    assert coarse_region == fine_region and coarse.shape == fine.shape
    assert dice(fine > 0.5, coarse > 0.5) > 0.85


def test_cover_grows_the_region_to_hold_a_block() -> None:
    truth = ellipsoid(SHAPE, (24, 20, 22), (6, 5, 5))
    volume = object_volume(truth)
    _, plain = random_walker_probability(volume, [(24, truth[24])])
    cover = (slice(2, 46), slice(plain[1].start, plain[1].stop), slice(1, 43))
    _, grown = random_walker_probability(volume, [(24, truth[24])], cover=cover)
    assert plain[0] != cover[0]
    for got, block in zip(grown, cover):
        assert got.start <= block.start and got.stop >= block.stop


def test_several_prompt_slices_seed_one_walk() -> None:
    truth = ellipsoid(SHAPE, (24, 20, 22), (20, 9, 10))
    volume = object_volume(truth)
    probability, region = random_walker_probability(volume, [(12, truth[12]), (36, truth[36])])
    assert region[0].start <= 12 and region[0].stop > 36
    assert dice(walked(volume, probability, region), truth) > 0.9


@pytest.mark.parametrize(
    "volume,planes,message",
    [
        (np.zeros((8, 8)), [(0, np.ones((8, 8), bool))], "needs a \\(D, H, W\\) volume"),
        (np.zeros((8, 8, 8)), [(3, np.zeros((8, 8), bool))], "at least one nonzero prompt"),
        (np.zeros((8, 8, 8)), [], "at least one nonzero prompt"),
    ],
)
def test_bad_input_is_named(volume: np.ndarray, planes: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_walker_probability(volume, planes)


def test_prompt_planes_bound_a_mask_by_the_box_it_came_from() -> None:
    mask = torch.zeros((10, 12), dtype=torch.bool)
    mask[3:5, 4:6] = True
    from_mask, from_box = prompt_planes([MaskPrompt(2, mask), MaskPrompt(7, mask, box=(2, 3, 6, 8))])
    assert from_mask[0] == 2 and torch.equal(from_mask[1], mask) and from_mask[2] is None
    assert from_box[0] == 7 and torch.equal(from_box[1], mask)
    assert int(from_box[2].sum()) == 5 * 6 and bool(from_box[2][2:7, 3:9].all())


def test_a_loose_box_keeps_background_out_of_a_thin_object() -> None:
    truth = np.zeros(SHAPE, dtype=bool)
    truth[10:38, 17:23, 19:25] = True  # a thin rod
    volume = object_volume(truth)
    box = np.zeros(SHAPE[1:], dtype=bool)
    box[8:32, 10:34] = True
    # Seeded with the filled box, the walker calls the box's background the object ...
    filled, region = random_walker_probability(volume, [(24, box)])
    assert dice(walked(volume, filled, region), truth) < 0.5
    # ... seeded with the object's mask inside the box, it finds the rod.
    bounded, region = random_walker_probability(volume, [(24, truth[24], box)])
    assert dice(walked(volume, bounded, region), truth) > 0.85


def test_extent_is_the_grown_bounding_block() -> None:
    mask = torch.zeros((10, 12, 14), dtype=torch.bool)
    mask[4:6, 0:3, 7:9] = True
    assert extent(mask, margin=2) == (slice(2, 8), slice(0, 5), slice(5, 11))
    assert extent(torch.zeros((4, 4, 4), dtype=torch.bool), margin=1) is None
