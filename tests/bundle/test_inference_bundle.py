"""The bundle's inference section run through `python -m monai.bundle run`, and its metadata verified offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object, ellipsoid, object_volume

from pam_monai.networks import build_box2mask, build_propmask

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundle"
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, 0.8, 0, -5.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1.0]])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundle_inference")
    truth = ellipsoid((48, 48, 24), (24, 24, 12), (10, 9, 7))
    nib.save(nib.Nifti1Image(object_volume(truth), AFFINE), root / "case.nii.gz")
    prompt = np.zeros(truth.shape, np.uint8)
    prompt[:, :, 12] = truth[:, :, 12]
    nib.save(nib.Nifti1Image(prompt, AFFINE), root / "prompt.nii.gz")
    # Plain state dicts, as the bundle's models/ holds them.
    torch.save(always_object(build_propmask("light")).state_dict(), root / "model.pt")
    torch.save(always_object(build_box2mask("light")).state_dict(), root / "box2mask.pt")
    return {"root": root, "image": root / "case.nii.gz", "prompt": root / "prompt.nii.gz"}


def _run(
    case: dict[str, Path], prompt: str, out: Path, *overrides: str, image: Path | None = None
) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--bundle_root", str(BUNDLE), "--ckpt_path", str(case["root"] / "model.pt"),
        "--box2mask_ckpt_path", str(case["root"] / "box2mask.pt"), "--image", str(image or case["image"]),
        "--prompt", prompt, "--output_dir", str(out), "--thickness_mm", "6", *overrides,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def _slicer_roi(path: Path) -> Path:
    """The box [14, 15, 34, 33] on slice 12 as a flat 3D Slicer ROI in LPS world coordinates."""
    edges = np.array([[13.5, 14.5, 12.0, 1.0], [34.5, 33.5, 12.0, 1.0]]) @ AFFINE.T
    center, size = edges[:, :3].mean(axis=0) * [-1, -1, 1], np.abs(edges[1, :3] - edges[0, :3])
    markup = {"type": "ROI", "coordinateSystem": "LPS", "center": center.tolist(), "size": size.tolist()}
    path.write_text(json.dumps({"markups": [markup]}))
    return path


@pytest.mark.parametrize("kind", ["mask", "box", "slicer_roi"])
def test_inference_section_writes_mask_report_and_preview(case: dict[str, Path], tmp_path: Path, kind: str) -> None:
    prompt = {
        "mask": lambda: str(case["prompt"]),
        "box": lambda: json.dumps({"box": [14, 15, 34, 33], "slice": 12, "axis": 2}),
        "slicer_roi": lambda: str(_slicer_roi(tmp_path / "box.mrk.json")),
    }[kind]()
    process = _run(case, prompt, tmp_path / "out")
    assert process.returncode == 0, process.stderr[-2000:]
    seg = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    assert seg.shape == (48, 48, 24)
    assert np.allclose(seg.affine, AFFINE, atol=1e-5)
    labels = np.asarray(seg.dataobj)
    assert labels[:, :, 12].sum() > 0
    report = json.loads((tmp_path / "out" / "case_report.json").read_text())
    assert report["objects"][0]["voxels"] == int((labels > 0).sum())
    assert (tmp_path / "out" / "case_preview.png").stat().st_size > 0


def _assert_one_line_error(process: subprocess.CompletedProcess, message: str, out: Path) -> None:
    """A non-zero exit, an ``error:`` line with ``message``, no traceback and nothing written."""
    assert process.returncode != 0
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert error_lines and message in error_lines[-1], process.stderr[-2000:]
    assert "Traceback" not in process.stderr, process.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("image", "prompt", "message"),
    [
        (None, {"box": [14, 15, 90, 33], "slice": 12}, "lies outside"),
        (None, {"box": [14, 15, 34, 33], "slice": 40}, "slice 40 is out of range"),
        ("missing.nii.gz", {"box": [14, 15, 34, 33], "slice": 12}, "cannot read the image: No such file"),
        ("corrupt.nii.gz", {"box": [14, 15, 34, 33], "slice": 12}, "cannot read the image: Cannot work out file type"),
        ("nan.nii.gz", {"box": [14, 15, 34, 33], "slice": 12}, "NaN"),
    ],
)
def test_inference_section_stops_on_bad_input_in_one_line(
    case: dict[str, Path], tmp_path: Path, image: str | None, prompt: dict, message: str
) -> None:
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not a nifti file")
    volume = np.asarray(nib.load(case["image"]).dataobj, dtype=np.float32)
    volume[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(volume, AFFINE), tmp_path / "nan.nii.gz")
    process = _run(case, json.dumps(prompt), tmp_path / "out", image=tmp_path / image if image else None)
    _assert_one_line_error(process, message, tmp_path / "out")


def test_inference_section_stops_on_a_slicer_roi_outside_the_image(case: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "outside.mrk.json"
    markup = {"type": "ROI", "coordinateSystem": "RAS", "center": [500.0, 0.0, 0.0], "size": [10.0, 10.0, 10.0]}
    path.write_text(json.dumps({"markups": [markup]}))
    process = _run(case, str(path), tmp_path / "out")
    _assert_one_line_error(process, "the ROI lies outside the image", tmp_path / "out")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("--walker_weight", "1.5"), "walker_weight must be in [0, 1], got 1.5."),
        (("--walker_weight_box", "-0.1"), "walker_weight_box must be in [0, 1], got -0.1."),
        (("--walker_beta", "0"), "walker_beta must be positive, got 0"),
        (("--interpolation_weight", "2"), "interpolation_weight must be in [0, 1], got 2"),
        (("--thickness_mm", "-2"), "thickness_mm must be positive, got -2"),
        (("--ckpt_path", "/nonexistent/model.pt"), "checkpoint file not found: '/nonexistent/model.pt'"),
        (("--box2mask_ckpt_path", "/nonexistent/b2m.pt"), "checkpoint file not found: '/nonexistent/b2m.pt'"),
    ],
)
def test_inference_section_rejects_a_bad_setting_or_checkpoint_in_one_line(
    case: dict[str, Path], tmp_path: Path, override: tuple[str, str], message: str
) -> None:
    process = _run(case, str(case["prompt"]), tmp_path / "out", *override)
    _assert_one_line_error(process, message, tmp_path / "out")


def test_metadata_verifies_offline_against_the_kept_schema(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "verify_metadata",
        "--meta_file",
        str(BUNDLE / "configs" / "metadata.json"),
        "--filepath",
        str(BUNDLE / "configs" / "meta_schema.json"),
    ]
    process = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert process.returncode == 0, process.stderr[-1000:]
    assert "verified with no error" in process.stdout + process.stderr
    broken = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    del broken["network_data_format"]["outputs"]["pred"]["dtype"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    command[command.index(str(BUNDLE / "configs" / "metadata.json"))] = str(tmp_path / "metadata.json")
    assert subprocess.run(command, capture_output=True, text=True, check=False, timeout=120).returncode != 0


def test_inference_section_takes_several_slices_boxes_and_a_correction(case: dict[str, Path], tmp_path: Path) -> None:
    """The prompt goes through the shared parser: masks on several slices, boxes on several slices, and a previous
    result corrected with clicks (only the slices around the correction change)."""
    full = np.asarray(nib.load(case["image"]).dataobj) > 50  # the object (100 on a background of 0 +- 5)
    masks = np.zeros(full.shape, np.uint8)
    masks[:, :, [9, 15]] = full[:, :, [9, 15]]
    nib.save(nib.Nifti1Image(masks, AFFINE), tmp_path / "two_slices.nii.gz")
    prompt = {"mask": str(tmp_path / "two_slices.nii.gz")}
    process = _run(case, json.dumps(prompt), tmp_path / "masks")
    assert process.returncode == 0, process.stderr[-2000:]
    labels = np.asarray(nib.load(tmp_path / "masks" / "case_seg.nii.gz").dataobj)
    assert np.array_equal(labels[:, :, [9, 15]] > 0, full[:, :, [9, 15]])  # every guide keeps its mask
    assert labels[:, :, 12].sum() > 0

    boxes = {"boxes": [{"box": [15, 16, 33, 32], "slice": 10}, {"box": [15, 16, 33, 32], "slice": 14}]}
    process = _run(case, json.dumps(boxes), tmp_path / "boxes")
    assert process.returncode == 0, process.stderr[-2000:]
    assert np.asarray(nib.load(tmp_path / "boxes" / "case_seg.nii.gz").dataobj)[:, :, [10, 14]].sum() > 0

    previous = np.zeros(full.shape, np.uint8)
    previous[:, :, 6:19] = full[:, :, 6:19]
    previous[20:28, 20:28, 12] = 0  # a hole the user fills with a foreground click
    nib.save(nib.Nifti1Image(previous, AFFINE), tmp_path / "previous.nii.gz")
    correction = {"previous": str(tmp_path / "previous.nii.gz"), "clicks": [[24, 24, 12, 1]]}
    process = _run(case, json.dumps(correction), tmp_path / "fixed")
    assert process.returncode == 0, process.stderr[-2000:]
    fixed = np.asarray(nib.load(tmp_path / "fixed" / "case_seg.nii.gz").dataobj)
    assert fixed[24, 24, 12] == 1 and previous[24, 24, 12] == 0  # the clicked hole is object now
