"""Prompts through the Deploy app: the shared parser's forms (masks on several slices, a corrected previous result)."""

# ruff: noqa: F811 - `data` is a fixture imported from deploy_case and named by the tests

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from deploy_case import (  # noqa: F401 - data is a fixture
    PROMPT_SLICE,
    SHAPE,
    data,
    error_line,
    expected_affine_ras,
    requires_deploy,
    run_app,
    seg_frames,
)

pytestmark = requires_deploy


def test_mask_prompt_two_objects_gives_two_segments(data: dict, tmp_path: Path) -> None:
    import highdicom as hd

    series = tmp_path / "input"
    shutil.copytree(data["series"], series)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[8:20, 10:22, PROMPT_SLICE] = 1
    mask[38:54, 30:46, PROMPT_SLICE] = 2
    nib.save(nib.Nifti1Image(mask, expected_affine_ras()), series / "mask.nii.gz")
    (series / "prompt.json").write_text(json.dumps({"mask": "mask.nii.gz"}))
    output = tmp_path / "output"
    completed = run_app("-i", str(series), "-o", str(output), "-m", str(data["models"]))
    assert completed.returncode == 0, completed.stderr[-4000:]
    (path,) = output.glob("*.dcm")
    seg = hd.seg.segread(path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["PAM object 1", "PAM object 2"]
    assert {number for _, _, number in seg_frames(seg)} == {1, 2}
    labels = np.asarray(nib.load(output / "pam_seg.nii.gz").dataobj)
    assert set(np.unique(labels)) == {0, 1, 2}
    report = json.loads((output / "pam_report.json").read_text())
    assert [o["label"] for o in report["objects"]] == [1, 2]


def test_mask_prompt_on_several_slices_through_the_shared_parser(data: dict, tmp_path: Path) -> None:
    """Object 1 drawn on slices 6 and 16, object 2 on slice 11: every marked slice is a guide and keeps its mask."""
    series = tmp_path / "input"
    shutil.copytree(data["series"], series)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[8:20, 10:22, 6] = 1
    mask[10:22, 12:24, 16] = 1
    mask[38:54, 30:46, PROMPT_SLICE] = 2
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    nib.save(nib.Nifti1Image(mask, expected_affine_ras()), prompts / "guides.nii.gz")
    (prompts / "prompt.json").write_text(json.dumps({"mask": "guides.nii.gz", "axis": 2}))
    output = tmp_path / "output"
    completed = run_app(
        "-i", str(series), "-o", str(output), "-m", str(data["models"]), "--prompt", str(prompts / "prompt.json")
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    labels = np.asarray(nib.load(output / "pam_seg.nii.gz").dataobj)
    for k, value in ((6, 1), (16, 1), (PROMPT_SLICE, 2)):  # each object's guides are kept as drawn
        np.testing.assert_array_equal(labels[:, :, k] == value, mask[:, :, k] == value)
    assert (labels[:, :, 7:16] == 1).any()  # object 1 between its two guides
    report = json.loads((output / "pam_report.json").read_text())
    assert [o["label"] for o in report["objects"]] == [1, 2]
    assert report["prompt"]["mask_prompt_path"] == str((prompts / "guides.nii.gz").resolve())
    assert report["objects"][0]["prompt_slices"] == [6, 16]


def test_one_box_on_two_slices(data: dict, tmp_path: Path) -> None:
    """``"slice": [k1, k2]`` puts the box on both slices: both are guides of object 1."""
    output = tmp_path / "output"
    prompt = {"box": [20, 18, 40, 36], "slice": [8, 14], "axis": 2}
    completed = run_app(
        "-i", str(data["series"]), "-o", str(output), "-m", str(data["models"]), "--prompt", json.dumps(prompt)
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads((output / "pam_report.json").read_text())
    (obj,) = report["objects"]
    assert obj["label"] == 1 and obj["prompt_slices"] == [8, 14]
    assert report["prompt"]["boxes"] == [[[20, 18, 40, 36], 8], [[20, 18, 40, 36], 14]]
    labels = np.asarray(nib.load(output / "pam_seg.nii.gz").dataobj)
    assert labels[:, :, 8:15].any(axis=(0, 1)).all()


def test_previous_result_corrected_on_one_slice(data: dict, tmp_path: Path) -> None:
    """A previous result (object 1 on slices 8..14) and a mask drawn on slice 12: that slice becomes a guide, the
    slices beyond the previous result's own guide and the correction's neighbours keep their labels."""
    series = tmp_path / "input"
    shutil.copytree(data["series"], series)
    previous = np.zeros(SHAPE, dtype=np.uint8)
    previous[20:40, 18:36, 8:15] = 1
    nib.save(nib.Nifti1Image(previous, expected_affine_ras()), tmp_path / "previous.nii.gz")
    correction = np.zeros(SHAPE, dtype=np.uint8)
    correction[24:34, 22:30, 12] = 1
    nib.save(nib.Nifti1Image(correction, expected_affine_ras()), series / "correction.nii.gz")
    prompt = {"previous": str(tmp_path / "previous.nii.gz"), "mask": "correction.nii.gz"}
    (series / "prompt.json").write_text(json.dumps(prompt))
    output = tmp_path / "output"
    completed = run_app("-i", str(series), "-o", str(output), "-m", str(data["models"]))
    assert completed.returncode == 0, completed.stderr[-4000:]
    labels = np.asarray(nib.load(output / "pam_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(labels[:, :, 12], correction[:, :, 12])
    report = json.loads((output / "pam_report.json").read_text())
    assert [o["label"] for o in report["objects"]] == [1]
    assert 12 in report["objects"][0]["prompt_slices"]
    assert report["prompt"]["previous_path"] == str((tmp_path / "previous.nii.gz").resolve())


def test_clicks_without_a_previous_result_are_refused_in_one_line(data: dict, tmp_path: Path) -> None:
    output = tmp_path / "output"
    prompt = {"clicks": [[30, 28, PROMPT_SLICE, 1]]}
    completed = run_app(
        "-i", str(data["series"]), "-o", str(output), "-m", str(data["models"]), "--prompt", json.dumps(prompt)
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "previous" in error_line(completed)
    assert not output.exists() or list(output.iterdir()) == []
