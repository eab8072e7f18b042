"""cross_image_share in the training data: validation, share 0 unchanged, mixed batches, worker seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader

from pam_monai.engines import TaskDataset, limit_worker_threads, task_transform, volume_dataset
from pam_monai.engines.data import check_cross_image_share
from pam_monai.errors import TrainingSetupError
from pam_monai.transforms.cross_tasks import RandCrossImageTaskd, RandMixedTaskd
from pam_monai.transforms.tasks import LabelSliceStatsd, RandPropagationTaskd


@pytest.fixture(scope="module")
def volumes():
    return volume_dataset(
        [], None, synthetic_volumes=2, synthetic_shape=(32, 32, 24), synthetic_seed=5,
        synthetic_transform=LabelSliceStatsd(),
    )  # fmt: skip


def batches(transform, volumes, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    dataset = TaskDataset(volumes, transform, tasks_per_volume=3)
    return list(DataLoader(dataset, batch_size=2, shuffle=True, num_workers=0))


def test_share_zero_gives_the_batches_of_before(volumes) -> None:
    before = RandPropagationTaskd(num_queries=2, thickness_mm=20.0, min_guide_pixels=100, size=32)
    now = task_transform("propmask", 32, num_queries=2, cross_image_share=0.0)
    assert type(now) is RandPropagationTaskd and vars(now).keys() == vars(before).keys()
    assert all(np.array_equal(vars(now)[k], vars(before)[k]) for k in vars(before) if k != "R")
    assert task_transform("propmask", 32, num_queries=2, cross_image_share="0").__class__ is RandPropagationTaskd
    for one, other in zip(batches(before, volumes), batches(now, volumes), strict=True):
        assert one.keys() == other.keys()
        assert all(torch.equal(torch.as_tensor(one[k]), torch.as_tensor(other[k])) for k in one)


def test_a_positive_share_mixes_cross_image_tasks_into_the_batches(volumes) -> None:
    sampler = task_transform("propmask", 32, num_queries=2, cross_image_share=0.5)
    assert isinstance(sampler, RandMixedTaskd) and isinstance(sampler.cross, RandCrossImageTaskd)
    assert sampler.cross.size == 32 and sampler.cross.num_queries == 2
    loaded = batches(sampler, volumes)
    axes = torch.cat([b["axis"] for b in loaded])
    assert (axes == -1).any() and (axes != -1).any()  # 6 tasks at share 0.5: both kinds (this seed)
    assert all(b["query_images"].shape == (2, 2, 1, 32, 32) for b in loaded)
    again = batches(task_transform("propmask", 32, num_queries=2, cross_image_share=0.5), volumes)
    assert all(torch.equal(a["query_masks"], b["query_masks"]) for a, b in zip(loaded, again))


@pytest.mark.parametrize("share", [1.5, -0.1, "x", None, float("nan")])
def test_the_share_must_be_in_zero_one(share) -> None:
    with pytest.raises(TrainingSetupError, match="cross_image_share must be a number in \\[0, 1\\]"):
        task_transform("propmask", 32, cross_image_share=share)


def test_box2mask_takes_no_cross_image_share() -> None:
    with pytest.raises(TrainingSetupError, match="PropMask training only"):
        check_cross_image_share(0.25, "box2mask")
    assert check_cross_image_share(0, "box2mask") == 0.0


def test_loader_workers_draw_different_tasks_in_every_epoch() -> None:
    sampler = RandCrossImageTaskd(num_queries=1, size=32)
    dataset = TaskDataset([{}] * 4, sampler, tasks_per_volume=1)
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=limit_worker_threads)
    epochs = [[float(b["guide_image"].sum()) for b in loader] for _ in range(2)]
    assert len(set(epochs[0] + epochs[1])) == 8  # no two workers, no two epochs repeat a task
