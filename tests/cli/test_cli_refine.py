"""``pam-monai segment`` with several annotated slices, boxes on several slices, and one correction per call."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object, ellipsoid, object_volume

from pam_monai.cli.main import main
from pam_monai.networks import build_box2mask, build_propmask, save_network

SHAPE = (48, 44, 30)
AFFINE = np.diag([0.9, 0.9, 2.0, 1.0])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refine")
    truth = ellipsoid(SHAPE, (24, 22, 15), (12, 11, 12))
    paths = {name: root / f"{name}.nii.gz" for name in ("image", "slices", "correction", "empty", "other_grid")}
    nib.save(nib.Nifti1Image(object_volume(truth), AFFINE), paths["image"])
    slices = np.zeros(SHAPE, np.uint8)
    for k in (8, 20):
        slices[:, :, k] = truth[:, :, k]
    nib.save(nib.Nifti1Image(slices, AFFINE), paths["slices"])
    correction = np.zeros(SHAPE, np.uint8)
    correction[:, :, 14] = truth[:, :, 14]
    nib.save(nib.Nifti1Image(correction, AFFINE), paths["correction"])
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE), paths["empty"])
    nib.save(nib.Nifti1Image(np.zeros((48, 44, 31), np.uint8), AFFINE), paths["other_grid"])
    torch.manual_seed(0)
    paths["propmask"] = save_network(always_object(build_propmask("light", input_size=64)), root / "propmask.pt")
    paths["box2mask"] = save_network(always_object(build_box2mask("light", input_size=64)), root / "box2mask.pt")
    return paths


def _run(files: dict[str, Path], out: Path, *arguments: str) -> int:
    weights = ["--checkpoint", str(files["propmask"]), "--box2mask-checkpoint", str(files["box2mask"])]
    return main(["segment", str(files["image"]), *arguments, "-o", str(out), *weights, "--no-progress"])


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_several_slices_then_a_correction_then_clicks(files: dict[str, Path], tmp_path: Path) -> None:
    seg, report = tmp_path / "seg.nii.gz", tmp_path / "seg.json"
    assert _run(files, seg, "--mask-prompt", str(files["slices"]), "--report", str(report)) == 0
    summary = json.loads(report.read_text())
    assert summary["objects"][0]["prompt_slices"] == [8, 20]
    first = _labels(seg)
    assert np.array_equal(first[:, :, 8] > 0, _labels(files["slices"])[:, :, 8] > 0)  # guides keep their masks

    fixed, fixed_report = tmp_path / "fixed.nii.gz", tmp_path / "fixed.json"
    arguments = ["--previous", str(seg), "--previous-report", str(report), "--mask-prompt", str(files["correction"])]
    assert _run(files, fixed, *arguments, "--report", str(fixed_report)) == 0
    second = _labels(fixed)
    outside = [k for k in range(SHAPE[2]) if not 8 < k < 20]
    assert np.array_equal(second[:, :, outside], first[:, :, outside])  # only between the neighbouring guides
    assert np.array_equal(second[:, :, 14] > 0, _labels(files["correction"])[:, :, 14] > 0)
    refined = json.loads(fixed_report.read_text())
    assert refined["objects"][0]["prompt_slices"] == [8, 14, 20]
    assert refined["prompt"]["previous"] == str(seg)

    clicked, clicked_report = tmp_path / "clicked.nii.gz", tmp_path / "clicked.json"
    arguments = ["--previous", str(fixed), "--previous-report", str(fixed_report), "--click", "24,22,17,-"]
    assert _run(files, clicked, *arguments, "--report", str(clicked_report)) == 0
    third = _labels(clicked)
    assert not (third[:, :, 17] > 0).any()  # the background click removed the slice's only component
    assert np.array_equal(third[:, :, :15], second[:, :, :15]) and np.array_equal(third[:, :, 20:], second[:, :, 20:])
    assert json.loads(clicked_report.read_text())["prompt"]["clicks"] == [[24, 22, 17, -1]]


def test_boxes_on_several_slices(files: dict[str, Path], tmp_path: Path) -> None:
    seg, report = tmp_path / "seg.nii.gz", tmp_path / "seg.json"
    box = ["--box", "14,13,34,31", "--slice", "10", "--box", "16,15,32,29", "--slice", "19"]
    assert _run(files, seg, *box, "--report", str(report)) == 0
    summary = json.loads(report.read_text())
    assert summary["objects"][0]["prompt_slices"] == [10, 19]
    assert summary["prompt"]["boxes"] == [
        {"box": [14, 13, 34, 31], "slice": 10},
        {"box": [16, 15, 32, 29], "slice": 19},
    ]


BAD = [
    (["--previous", "{seg}", "--click", "24,22,30"], "outside the image"),
    (["--previous", "{seg}", "--click", "24,22"], "--click must be"),
    (["--previous", "{seg}", "--click", "24,22,10,x"], "--click must be"),
    (["--previous", "{seg}", "--mask-prompt", "{empty}"], "empty"),
    (["--previous", "{other_grid}", "--click", "24,22,10"], "grid"),
    (["--previous", "{seg}", "--click", "24,22,10", "--label", "3"], "label 3, which the result does not have"),
    (["--previous", "{seg}", "--box", "10,10,20,20", "--slice", "40"], "out of range"),
    (["--previous", "{seg}", "--box3d", "1,1,1,9,9,9"], "a 3D box or ROI is a new prompt"),
    (["--previous", "{seg}"], "give a prompt"),
    (["--click", "24,22,10"], "--click corrects a result"),
    (["--box", "10,10,20,20", "--box", "10,10,20,20", "--slice", "4"], "one --slice per --box"),
    (["--box3d", "1,1,1,9,9,9", "--mask-prompt", "{slices}"], "a prompt on its own"),
    (["--mask-prompt", "{slices}", "--previous-report", "{seg}"], "--previous-report goes with --previous"),
]


@pytest.mark.parametrize("arguments,message", BAD)
def test_bad_corrections_are_one_line_exit_2_and_nothing_written(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str
) -> None:
    previous = np.zeros(SHAPE, np.uint8)
    previous[20:28, 18:26, 8:20] = 1
    nib.save(nib.Nifti1Image(previous, AFFINE), files["image"].parent / "previous_seg.nii.gz")
    names = {k: str(v) for k, v in files.items()} | {"seg": str(files["image"].parent / "previous_seg.nii.gz")}
    out = tmp_path / "never.nii.gz"
    assert _run(files, out, *(a.format(**names) for a in arguments)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pam-monai: error:") and message in error[0], error
    assert list(tmp_path.iterdir()) == []
