"""Images as a plain tensor and an affine (what the command line reads, without MONAI) agree with MONAI's reading."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import write_dicom_series
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing

from pam_monai.data.io import affine_spacing, is_meta_tensor, load_image, load_volume
from pam_monai.errors import ImageReadError

AFFINE = np.array([[0, -0.8, 0, 10.0], [0.9, 0, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1.0]])


def test_load_volume_reads_what_load_image_reads(tmp_path) -> None:  # noqa: ANN001
    array = np.random.default_rng(0).normal(size=(12, 10, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, AFFINE), tmp_path / "image.nii.gz")
    volume, affine = load_volume(tmp_path / "image.nii.gz")
    image = load_image(tmp_path / "image.nii.gz")
    assert type(volume) is torch.Tensor and volume.dtype == torch.float32
    assert torch.equal(volume, image.as_tensor()) and np.allclose(affine, AFFINE)
    assert affine.dtype == np.float64 and np.array_equal(affine, np.asarray(image.affine))


def test_load_volume_reads_other_formats_through_monai(tmp_path) -> None:  # noqa: ANN001
    volume = np.arange(8 * 9 * 4, dtype=np.int16).reshape(8, 9, 4)
    folder = tmp_path / "series"
    write_dicom_series(volume, folder, spacing=(0.7, 0.7, 2.0))
    array, affine = load_volume(folder)
    image = load_image(folder)
    assert torch.equal(array, image.as_tensor()) and np.array_equal(affine, np.asarray(image.affine))
    with pytest.raises(ImageReadError, match="no such file"):
        load_volume(tmp_path / "missing.nii.gz")


def test_affine_spacing_is_monais() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        affine = np.eye(4)
        affine[:3, :3] = rng.normal(size=(3, 3)) * rng.uniform(0.1, 5)
        expected = tuple(float(v) for v in affine_to_spacing(torch.as_tensor(affine), r=3))
        assert affine_spacing(affine) == affine_spacing(torch.as_tensor(affine)) == expected
    assert affine_spacing(np.diag([0.0, 2.0, 3.0, 1.0])) == (1.0, 2.0, 3.0)  # a zero column reads as 1, as MONAI's


def test_is_meta_tensor() -> None:
    assert is_meta_tensor(MetaTensor(torch.zeros(2)))
    assert not is_meta_tensor(torch.zeros(2)) and not is_meta_tensor(np.zeros(2)) and not is_meta_tensor(None)
