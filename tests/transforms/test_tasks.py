"""Task samplers for training: PropMask propagation tasks and Box2Mask samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ellipsoid, object_volume
from monai.data import MetaTensor

from pam_monai.transforms.tasks import (
    LabelSliceStats,
    LabelSliceStatsd,
    RandBox2MaskSampled,
    RandPropagationTaskd,
    augment_slices,
    compute_label_slice_stats,
)

SHAPE = (40, 36, 32)
SPACING = (1.0, 1.5, 2.5)


def interior(masks: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """Mask pixels at least ``margin`` pixels from the border (bilinear images blend across the border)."""
    k = 2 * margin + 1
    eroded = -torch.nn.functional.max_pool2d(-masks.float()[:, None], k, stride=1, padding=margin)[:, 0]
    return eroded > 0.5


def make_volume(label: np.ndarray, name: str = "/data/case_001.nii.gz") -> dict:
    affine = np.diag([*SPACING, 1.0])
    image = MetaTensor(torch.as_tensor(object_volume(label))[None], affine=affine, meta={"filename_or_obj": name})
    return {"image": image, "label": MetaTensor(torch.as_tensor(label)[None], affine=affine)}


@pytest.fixture(scope="module")
def volume() -> dict:
    label = np.zeros(SHAPE, dtype=np.int16)
    label[ellipsoid(SHAPE, (14, 14, 12), (9, 8, 7))] = 1
    label[ellipsoid(SHAPE, (28, 22, 20), (7, 9, 8))] = 7
    return LabelSliceStatsd()(make_volume(label))


def test_label_slice_stats(volume: dict) -> None:
    stats = volume["label_stats"]
    assert isinstance(stats, LabelSliceStats)
    assert volume["label"].dtype == torch.uint8 and isinstance(volume["label"], MetaTensor)
    assert stats.values.tolist() == [1, 7]
    label = volume["label"][0].numpy()
    for i, value in enumerate(stats.values):
        assert stats.voxels[i] == (label == value).sum()
        for axis in range(3):
            assert stats.counts[axis].shape == (2, SHAPE[axis])
            expected = (label == value).sum(axis=tuple(a for a in range(3) if a != axis))
            np.testing.assert_array_equal(stats.counts[axis][i], expected)
    assert len(compute_label_slice_stats(np.zeros(SHAPE, np.uint8)).values) == 0


def test_propagation_task_shapes_and_ranges(volume: dict) -> None:
    sampler = RandPropagationTaskd(num_queries=4, size=32).set_random_state(0)
    for _ in range(10):
        task = sampler(volume)
        assert task["guide_image"].shape == (1, 32, 32) and task["guide_mask"].shape == (1, 32, 32)
        assert task["query_images"].shape == (4, 1, 32, 32) and task["query_masks"].shape == (4, 1, 32, 32)
        for key in ("guide_image", "guide_mask", "query_images", "query_masks"):
            assert type(task[key]) is torch.Tensor and task[key].dtype == torch.float32
        for key in ("guide_image", "query_images"):
            assert task[key].min() >= -1.0 and task[key].max() <= 1.0
        for key in ("guide_mask", "query_masks"):
            assert set(task[key].unique().tolist()) <= {0.0, 1.0}
        assert task["guide_mask"].sum() > 0


def test_propagation_task_is_deterministic(volume: dict) -> None:
    a = RandPropagationTaskd(size=32).set_random_state(5)(volume)
    b = RandPropagationTaskd(size=32).set_random_state(5)(volume)
    c = RandPropagationTaskd(size=32).set_random_state(6)(volume)
    for key in ("guide_image", "guide_mask", "query_images", "query_masks", "query_slices"):
        assert torch.equal(a[key], b[key])
    assert any(not torch.equal(a[k], c[k]) for k in ("guide_image", "query_images")) or a["axis"] != c["axis"]


def test_propagation_task_axes_slices_and_guide_pixels(volume: dict) -> None:
    sampler = RandPropagationTaskd(size=32, thickness_mm=6.0, min_guide_pixels=40).set_random_state(1)
    label = volume["label"][0]
    axes, objects = set(), set()
    for _ in range(60):
        task = sampler(volume)
        axis, guide = task["axis"], task["guide_slice"]
        axes.add(axis)
        objects.add(task["object_label"])
        pixels = int((label.select(axis, guide) == task["object_label"]).sum())
        assert pixels == task["guide_pixels"] >= 40
        reach = max(int(6.0 / SPACING[axis]), 1)
        queries = task["query_slices"]
        assert ((queries - guide).abs() <= reach).all() and (queries != guide).all()
        assert (queries >= 0).all() and (queries < SHAPE[axis]).all()
    assert axes == {0, 1, 2} and objects == {1, 7}
    only_z = RandPropagationTaskd(size=32, axes=(2,)).set_random_state(0)
    assert {only_z(volume)["axis"] for _ in range(10)} == {2}


@pytest.mark.parametrize("augment", [False, True])
def test_propagation_task_images_and_masks_stay_aligned(volume: dict, augment: bool) -> None:
    """Objects are exactly 100 on a ~0 background: the guided window maps them to 0 and the background to -1."""
    prob = 0.5 if augment else 0.0
    sampler = RandPropagationTaskd(size=48, flip_prob=prob, rotate_prob=prob).set_random_state(2)
    for _ in range(8):
        task = sampler(volume)
        images = torch.cat((task["guide_image"], task["query_images"][:, 0]))
        masks = torch.cat((task["guide_mask"], task["query_masks"][:, 0])).bool()
        inside = images[interior(masks)]
        if inside.numel():
            assert (inside > -0.5).float().mean() > 0.95
        assert (images[~masks] < -0.5).float().mean() > 0.9


def test_propagation_task_fallback_and_empty_label() -> None:
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[10:13, 10:13, 10:13] = 2  # 9 pixels per slice at most
    label[30:32, 5:7, 5:6] = 4
    task = RandPropagationTaskd(size=16).set_random_state(0)(make_volume(label))
    assert task["object_label"] == 2 and task["guide_pixels"] == 9

    with pytest.raises(ValueError, match="empty_case.nii.gz"):
        RandPropagationTaskd(size=16)(make_volume(np.zeros(SHAPE, np.uint8), name="/data/empty_case.nii.gz"))
    with pytest.raises(ValueError, match="empty_case.nii.gz"):
        RandBox2MaskSampled(size=16)(make_volume(np.zeros(SHAPE, np.uint8), name="/data/empty_case.nii.gz"))


def test_box2mask_sample(volume: dict) -> None:
    sampler = RandBox2MaskSampled(size=32, min_pixels=40).set_random_state(0)
    for _ in range(10):
        sample = sampler(volume)
        assert sample["image"].shape == (1, 32, 32) and sample["label"].shape == (1, 32, 32)
        assert sample["image"].min() >= -1.0 and sample["image"].max() <= 1.0
        assert set(sample["label"].unique().tolist()) <= {0.0, 1.0} and sample["label"].sum() > 0
        r0, c0, r1, c1 = sample["box"].tolist()
        height, width = (s for a, s in enumerate(SHAPE) if a != sample["axis"])
        assert 0 <= r0 <= r1 < height and 0 <= c0 <= c1 < width
    again = RandBox2MaskSampled(size=32, min_pixels=40).set_random_state(0)(volume)
    first = RandBox2MaskSampled(size=32, min_pixels=40).set_random_state(0)(volume)
    assert torch.equal(again["image"], first["image"]) and torch.equal(again["label"], first["label"])


def test_box2mask_sample_normalisation_without_augmentation(volume: dict) -> None:
    sampler = RandBox2MaskSampled(size=32, flip_prob=0, rotate_prob=0, brightness=0, contrast=0).set_random_state(3)
    sample = sampler(volume)
    inside = sample["label"].bool()
    # the object's own percentiles set the window: object pixels near 0, background at -1
    assert (sample["image"][interior(inside)] > -0.5).float().mean() > 0.95
    assert (sample["image"][~inside] < -0.5).float().mean() > 0.8


def test_scaled_box_is_clipped() -> None:
    assert RandBox2MaskSampled.scaled_box((0, 0, 9, 9), 1.0, 20, 20) == (0, 0, 9, 9)
    assert RandBox2MaskSampled.scaled_box((0, 0, 9, 9), 1.2, 20, 20) == (0, 0, 10, 10)
    assert RandBox2MaskSampled.scaled_box((5, 5, 14, 14), 1.2, 20, 20) == (4, 4, 15, 15)


def test_augment_slices_flips_and_right_angle_rotation() -> None:
    images = torch.rand(3, 8, 8) * 2 - 1
    masks = (torch.rand(3, 8, 8) > 0.5).float()
    flips = np.array([[True, False], [False, True], [False, False]])
    out_images, out_masks = augment_slices(images, masks, flips, np.zeros(3))
    assert torch.equal(out_images[0], images[0].flip(-2)) and torch.equal(out_masks[1], masks[1].flip(-1))
    assert torch.equal(out_images[2], images[2])
    _, rotated = augment_slices(images, masks, np.zeros((3, 2), bool), np.array([math.pi / 2, 0.0, 0.0]))
    assert any(torch.equal(rotated[0], masks[0].rot90(k, (-2, -1))) for k in (1, 3))
    assert torch.equal(rotated[1], masks[1])
