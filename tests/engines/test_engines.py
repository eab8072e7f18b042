"""Training building blocks: datalist checks, cached volumes and tasks, batches for the MONAI engines, loss, metric."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import ellipsoid, object_volume

from pam_monai.data.datalist import DatalistError, load_datalist, validate_datalist
from pam_monai.engines import (
    TaskDataset,
    as_bool,
    build_network,
    deep_supervision_dice_loss,
    prepare_box2mask_batch,
    prepare_propagation_batch,
    segmentation_output_transform,
    task_transform,
    volume_dataset,
)
from pam_monai.errors import TrainingSetupError
from pam_monai.inferers.task import TaskInferer
from pam_monai.transforms.tasks import LabelSliceStatsd

SHAPE = (24, 24, 20)


def write_case(folder, name: str, label: np.ndarray, label_affine: np.ndarray | None = None) -> dict:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    (folder / "imagesTr").mkdir(exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    image_path, label_path = folder / "imagesTr" / name, folder / "labelsTr" / name
    nib.save(nib.Nifti1Image(object_volume(label), affine), str(image_path))
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine if label_affine is None else label_affine), str(label_path))
    return {"image": str(image_path), "label": str(label_path)}


@pytest.fixture
def label() -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    out[ellipsoid(SHAPE, (12, 12, 10), (7, 7, 5))] = 1
    return out


def test_validate_datalist_accepts_good_entries(tmp_path, label) -> None:
    items = [write_case(tmp_path, "a.nii.gz", label)]
    assert validate_datalist(items) == items


def test_validate_datalist_errors_name_the_file(tmp_path, label) -> None:
    good = write_case(tmp_path, "good.nii.gz", label)
    missing = {"image": good["image"], "label": str(tmp_path / "labelsTr" / "missing.nii.gz")}
    other_grid = write_case(tmp_path, "grid.nii.gz", label)
    nib.save(nib.Nifti1Image(label[:, :, :-2], np.diag([1.0, 1.0, 2.0, 1.0])), other_grid["label"])
    shifted = write_case(tmp_path, "shift.nii.gz", label, label_affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    empty = write_case(tmp_path, "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    cases = [
        (missing, "missing.nii.gz", "not found"),
        (other_grid, "grid.nii.gz", "differs from image grid"),
        (shifted, "shift.nii.gz", "affine differs"),
        (empty, "empty.nii.gz", "empty"),
    ]
    for item, name, reason in cases:
        with pytest.raises(DatalistError) as info:
            validate_datalist([good, item])
        message = str(info.value)
        assert name in message and reason in message and "\n" not in message
    with pytest.raises(DatalistError, match="no 'label'"):
        validate_datalist([{"image": good["image"]}])


def test_load_datalist(tmp_path, label) -> None:
    write_case(tmp_path, "a.nii.gz", label)
    (tmp_path / "dataset.json").write_text(
        '{"training": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}], "validation": []}'
    )
    items = load_datalist(tmp_path / "dataset.json", "training")
    assert items[0]["image"] == str(tmp_path / "imagesTr" / "a.nii.gz")
    assert load_datalist(tmp_path / "dataset.json", "validation", required=False) == []
    assert load_datalist(None) == []
    with pytest.raises(DatalistError, match="validation"):
        load_datalist(tmp_path / "dataset.json", "validation")
    with pytest.raises(DatalistError, match="nothing.json"):
        load_datalist(tmp_path / "nothing.json")


def test_task_dataset_from_cached_volumes(tmp_path, label) -> None:
    from monai.transforms import Compose, LoadImaged

    items = [write_case(tmp_path, "a.nii.gz", label)]
    load = Compose(
        [
            LoadImaged("image", image_only=True, ensure_channel_first=True),
            LoadImaged("label", image_only=True, ensure_channel_first=True, dtype=None),
            LabelSliceStatsd(),
        ]
    )
    volumes = volume_dataset(
        items,
        load,
        synthetic_volumes=1,
        synthetic_shape=(32, 32, 24),
        synthetic_seed=4,
        synthetic_transform=LabelSliceStatsd(),
    )
    assert len(volumes) == 2
    train = TaskDataset(volumes, task_transform("propmask", 32, num_queries=2), tasks_per_volume=3)
    assert len(train) == 6 and train[5]["query_images"].shape == (2, 1, 32, 32)
    held_out = TaskDataset(volumes, task_transform("box2mask", 32, augment=False), tasks_per_volume=2, seed=7)
    assert torch.equal(held_out[3]["image"], held_out[3]["image"])  # fixed tasks, whatever the order of access
    first = held_out[1]["image"]
    held_out[0], held_out[2]
    assert torch.equal(held_out[1]["image"], first)


def test_synthetic_volumes_generated_by_worker_processes_match_serial() -> None:
    serial = volume_dataset([], None, synthetic_volumes=3, synthetic_shape=(24, 24, 16), synthetic_seed=9)
    parallel = volume_dataset(
        [], None, synthetic_volumes=3, synthetic_shape=(24, 24, 16), synthetic_seed=9, num_workers=2
    )
    assert len(parallel) == 3
    for one, other in zip(serial, parallel):
        assert torch.equal(torch.as_tensor(one["image"]), torch.as_tensor(other["image"]))
        assert torch.equal(torch.as_tensor(one["label"]), torch.as_tensor(other["label"]))
        assert torch.allclose(one["image"].affine, other["image"].affine)


def test_propagation_batch_inferer_loss_and_metric() -> None:
    torch.manual_seed(0)
    b, nq, s = 2, 3, 64
    batch = {
        "guide_image": torch.rand(b, 1, s, s) * 2 - 1,
        "guide_mask": (torch.rand(b, 1, s, s) > 0.5).float(),
        "query_images": torch.rand(b, nq, 1, s, s) * 2 - 1,
        "query_masks": (torch.rand(b, nq, 1, s, s) > 0.5).float(),
    }
    inputs, targets = prepare_propagation_batch(batch, torch.device("cpu"))
    assert len(inputs) == 3 and targets.shape == (b * nq, 1, s, s)
    network = build_network("propmask", "light", input_size=s)
    logits = TaskInferer()(inputs, network)
    assert len(logits) == 5 and logits[0].shape == (b * nq, 2, s, s) and logits[-1].shape[-1] == s // 16
    loss = deep_supervision_dice_loss()(logits, targets)
    assert loss.ndim == 0 and 0.0 < float(loss.detach()) < 1.0
    loss.backward()
    assert network.image_encoder.stages[0].convs[0].conv.weight.grad is not None
    y_pred, y = segmentation_output_transform({"pred": logits, "label": targets})
    assert y_pred.shape == y.shape == (b * nq, 2, s, s)
    assert torch.equal(y_pred.sum(1), torch.ones(b * nq, s, s)) and torch.equal(y[:, 1:], targets)


def test_box2mask_batch_and_perfect_dice() -> None:
    batch = {"image": torch.zeros(2, 1, 32, 32), "label": torch.zeros(2, 1, 32, 32)}
    batch["label"][:, :, 8:20, 8:20] = 1
    image, label = prepare_box2mask_batch(batch)
    assert image.shape == label.shape == (2, 1, 32, 32)
    logits = torch.cat((1 - label, label), 1) * 20
    loss = deep_supervision_dice_loss(num_heads=2)([logits, logits[..., ::2, ::2]], label)
    assert float(loss) < 1e-3
    assert TaskInferer()(image, lambda x: x + 1).equal(image + 1)
    assert TaskInferer()({"x": image}, lambda x: x * 2).equal(image * 2)


def test_as_bool() -> None:
    assert as_bool("true") and as_bool("1") and as_bool(True) and not as_bool("false") and not as_bool(0)
    with pytest.raises(ValueError):
        as_bool("maybe")


def test_synthetic_hidden_boundaries_reach_the_generator() -> None:
    def first(probability: float) -> dict:
        return volume_dataset(
            [], None, synthetic_volumes=1, synthetic_shape=(48, 48, 32), synthetic_seed=3,
            synthetic_hidden_boundaries=probability,
        )[0]  # fmt: skip

    hidden, visible = first(1.0), first(0.0)
    assert torch.equal(torch.as_tensor(hidden["label"]), torch.as_tensor(visible["label"]))
    assert not torch.equal(torch.as_tensor(hidden["image"]), torch.as_tensor(visible["image"]))


@pytest.mark.parametrize("share", [-0.1, 1.5, "abc"])
def test_synthetic_hidden_boundaries_must_be_a_probability(share) -> None:
    with pytest.raises(TrainingSetupError, match="synthetic_hidden_boundaries must be a probability"):
        volume_dataset([], None, synthetic_volumes=1, synthetic_hidden_boundaries=share)
