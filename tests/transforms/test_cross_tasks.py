"""Cross-image PropMask tasks and their mixing with the slice-to-slice tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ellipsoid, object_volume
from monai.data import MetaTensor

from pam_monai.transforms.cross_tasks import RandCrossImageTaskd, RandMixedTaskd, containing_window
from pam_monai.transforms.roi import mask_bounding_box
from pam_monai.transforms.tasks import LabelSliceStatsd, RandPropagationTaskd

SIZE = 48


@pytest.fixture(scope="module")
def volume() -> dict:
    shape = (32, 32, 24)
    label = np.zeros(shape, dtype=np.uint8)
    label[ellipsoid(shape, (16, 16, 12), (8, 7, 6))] = 1
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image = MetaTensor(torch.as_tensor(object_volume(label))[None], affine=affine)
    return LabelSliceStatsd()({"image": image, "label": MetaTensor(torch.as_tensor(label)[None], affine=affine)})


def box_centre_offset(mask: torch.Tensor) -> float:
    """Distance of the mask's bounding-box centre from the crop's centre, relative to the crop side."""
    r0, c0, r1, c1 = mask_bounding_box(mask)
    centre = (mask.shape[-1] - 1) / 2.0
    return float(np.hypot((r0 + r1) / 2.0 - centre, (c0 + c1) / 2.0 - centre)) / mask.shape[-1]


def test_same_keys_shapes_and_dtypes_as_the_slice_to_slice_tasks(volume: dict) -> None:
    normal = RandPropagationTaskd(num_queries=3, size=SIZE).set_random_state(0)(volume)
    cross = RandCrossImageTaskd(num_queries=3, size=SIZE).set_random_state(0)(volume)
    assert cross.keys() == normal.keys()
    for key, value in normal.items():
        other = cross[key]
        assert type(other) is type(value), key
        if isinstance(value, torch.Tensor):
            assert other.shape == value.shape and other.dtype == value.dtype, key
    assert cross["axis"] == cross["guide_slice"] == -1 and (cross["query_slices"] == -1).all()
    assert cross["guide_image"].min() >= -1.0 and cross["guide_image"].max() <= 1.0
    assert set(torch.unique(cross["query_masks"]).tolist()) <= {0.0, 1.0}
    assert cross["guide_pixels"] > 0 and cross["guide_mask"].sum() > 0


def test_seeded_tasks_repeat_and_differ_between_seeds() -> None:
    def draw(seed: int) -> dict:
        return RandCrossImageTaskd(num_queries=2, size=SIZE).set_random_state(seed)({})

    one, two, other = draw(4), draw(4), draw(5)
    for key in ("guide_image", "guide_mask", "query_images", "query_masks"):
        assert torch.equal(one[key], two[key])
    assert not torch.equal(one["guide_image"], other["guide_image"])


def test_query_crops_are_not_centred_on_the_object() -> None:
    """Guide RoIs centre the guide object; query windows hold the query object anywhere (not the guide's box)."""
    sampler = RandCrossImageTaskd(
        num_queries=4, size=SIZE, whole_guide_prob=0.0, whole_query_prob=0.0, query_window=(0.4, 1.0)
    ).set_random_state(1)
    guide_offsets, query_offsets, masks_differ = [], [], 0
    for _ in range(6):
        task = sampler({})
        guide_offsets.append(box_centre_offset(task["guide_mask"][0]))
        query_offsets += [box_centre_offset(m[0]) for m in task["query_masks"] if m.any()]
        masks_differ += sum(not torch.equal(m, task["guide_mask"]) for m in task["query_masks"])
    assert max(guide_offsets) < 0.05
    assert np.median(query_offsets) > 0.08 and max(query_offsets) > 0.2
    assert masks_differ == 24


def test_whole_scene_queries_show_the_scene_unchanged() -> None:
    task = RandCrossImageTaskd(num_queries=2, size=SIZE, whole_query_prob=1.0).set_random_state(2)({})
    masks = task["query_masks"][:, 0]
    areas = masks.flatten(1).sum(1)
    assert (areas > 0).all() and areas.max() < 0.6 * SIZE * SIZE


def test_containing_window_holds_the_mask_at_uniform_places() -> None:
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[20:30, 40:44] = True
    rng = np.random.RandomState(0)
    windows = [containing_window(mask, 24, rng) for _ in range(200)]
    for w in windows:
        assert w.size == 24 and 0 <= w.top <= 20 and w.top + w.size >= 30 and 0 <= w.left <= 40
        assert w.left + w.size >= 44 and w.top + w.size <= 64 and w.left + w.size <= 64
    assert len({w.top for w in windows}) >= 10 and len({w.left for w in windows}) >= 15
    assert containing_window(mask, 4, rng).size == 10  # at least the box
    assert containing_window(mask, 500, rng).size == 64  # at most the image


def test_mixing_share(volume: dict) -> None:
    def mixed(share: float, seed: int = 0) -> RandMixedTaskd:
        return RandMixedTaskd(
            tasks=RandPropagationTaskd(num_queries=2, size=SIZE),
            cross=RandCrossImageTaskd(num_queries=2, size=SIZE),
            cross_share=share,
        ).set_random_state(seed)

    assert all(mixed(0.0)(volume)["axis"] != -1 for _ in range(5))
    assert all(mixed(1.0)(volume)["axis"] == -1 for _ in range(3))
    sampler = mixed(0.5, seed=3)
    kinds = [sampler(volume)["axis"] == -1 for _ in range(16)]
    assert 2 <= sum(kinds) <= 14
    again = mixed(0.5, seed=3)
    assert kinds == [again(volume)["axis"] == -1 for _ in range(16)]
    with pytest.raises(ValueError, match="cross_share"):
        mixed(1.5)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="whole_query_prob"):
        RandCrossImageTaskd(whole_query_prob=2.0)
    with pytest.raises(ValueError, match="cube"):
        RandCrossImageTaskd(families=["cube"])
    with pytest.raises(ValueError, match="num_queries"):
        RandCrossImageTaskd(num_queries=0)
