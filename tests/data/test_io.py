"""Reading images and writing results: atomic writes with the permissions of ordinary new files."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pam_monai.data.io import ImageReadError, load_image, read_nifti, save_label_image, write_atomic


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_write_atomic_gives_the_umask_permissions(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    path = write_atomic(tmp_path / "sub" / "report.json", lambda t: t.write_text("{}"))
    assert path.read_text() == "{}"
    assert mode(path) == expected
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left behind


def test_label_image_is_0644_under_umask_022(tmp_path: Path, umask) -> None:
    umask(0o022)
    path = save_label_image(np.ones((4, 5, 6), np.uint8), np.diag([2.0, 1.0, 1.5, 1.0]), tmp_path / "seg.nii.gz")
    assert mode(path) == 0o644
    assert nib.load(path).shape == (4, 5, 6)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "out.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_with_umask_permissions(tmp_path: Path, umask) -> None:
    umask(0o022)
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, lambda t: t.write_text("new"))
    assert target.read_text() == "new" and mode(target) == 0o644


def test_bundle_writer_outputs_are_0644(tmp_path: Path, umask) -> None:
    from monai.data import MetaTensor

    from pam_monai.workflows.inference import SavePropagationResultsd

    umask(0o022)
    image = MetaTensor(torch.rand(1, 12, 10, 8), affine=torch.eye(4), meta={"filename_or_obj": "case.nii.gz"})
    labels = torch.zeros(1, 12, 10, 8, dtype=torch.uint8)
    labels[0, 3:8, 3:7, 2:6] = 1
    SavePropagationResultsd(keys="pred", output_dir=tmp_path)({"image": image, "pred": labels})
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == ["case_preview.png", "case_report.json", "case_seg.nii.gz"]
    assert all(mode(p) == 0o644 for p in written)


def test_nifti_is_read_with_its_affine(tmp_path: Path) -> None:
    affine = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])
    data = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "image.nii.gz")
    image = load_image(tmp_path / "image.nii.gz")
    assert tuple(image.shape) == (6, 7, 8)
    np.testing.assert_allclose(np.asarray(image), data, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(image.affine), affine, atol=1e-5)


def test_missing_or_corrupt_image_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b not a nifti")
    with pytest.raises(ImageReadError, match="cannot read the image") as error:
        load_image(tmp_path / "bad.nii.gz")
    assert "\n" not in str(error.value)


def test_nifti_matches_monai_loadimage(tmp_path: Path) -> None:
    from monai.transforms import LoadImage

    affine = np.array([[0, -1.2, 0, 30.0], [0.9, 0, 0, -12.0], [0, 0, 3.0, 4.0], [0, 0, 0, 1.0]])
    data = (np.random.default_rng(1).normal(size=(9, 7, 5)) * 100).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    image.header.set_slope_inter(0.5, -3.0)  # scaled on reading
    nib.save(image, tmp_path / "image.nii")
    ours = load_image(tmp_path / "image.nii")
    monai = LoadImage(image_only=True, ensure_channel_first=False)(str(tmp_path / "image.nii"))
    assert ours.dtype == monai.dtype and tuple(ours.shape) == tuple(monai.shape)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(monai))
    np.testing.assert_allclose(np.asarray(ours.affine), np.asarray(monai.affine))
    assert ours.is_contiguous() and ours.meta["filename_or_obj"] == str(tmp_path / "image.nii")


def test_non_nifti_goes_to_loadimage(tmp_path: Path) -> None:
    assert read_nifti(tmp_path / "image.nrrd") is None
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), tmp_path / "four.nii.gz")
    assert read_nifti(tmp_path / "four.nii.gz") is None  # 4D: LoadImage decides


def test_saved_network_gets_the_umask_permissions(tmp_path: Path, umask) -> None:
    from pam_monai.networks import build_box2mask, save_network

    umask(0o027)
    path = save_network(build_box2mask("light", input_size=64), tmp_path / "weights.pt")
    assert mode(path) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]
