"""3D Slicer ROI markups turned into prompts on the image's voxel grid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pam_monai.errors import PromptError
from pam_monai.prompts.slicer_roi import read_slicer_roi, roi_prompt

SHAPE = (48, 44, 30)
AFFINES = {
    "flipped": np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]]),
    "permuted": np.array([[0, 0, 1.5, -20.0], [-0.7, 0, 0, 10.0], [0, 1.1, 0, 5.0], [0, 0, 0, 1.0]]),
}


def _roi_file(path: Path, affine: np.ndarray, first: tuple, last: tuple, system: str = "LPS", **extra) -> Path:
    """An axis-aligned ROI whose faces lie half a voxel outside the voxels ``first..last`` (as Slicer snaps them)."""
    edges = np.array(
        [[first[0] - 0.5, first[1] - 0.5, first[2] - 0.5, 1], [last[0] + 0.5, last[1] + 0.5, last[2] + 0.5, 1]]
    )
    ras = (edges @ affine.T)[:, :3]
    center, size = ras.mean(axis=0), np.abs(ras[1] - ras[0])
    if system == "LPS":
        center = center * [-1, -1, 1]
    markup = {"type": "ROI", "coordinateSystem": system, "center": center.tolist(), "size": size.tolist(), **extra}
    path.write_text(json.dumps({"@schema": "markups-schema-v1.0.3.json#", "markups": [markup]}))
    return path


@pytest.mark.parametrize("system", ["LPS", "RAS"])
@pytest.mark.parametrize("name", list(AFFINES))
def test_a_solid_roi_is_the_3d_box_of_its_voxels(tmp_path: Path, system: str, name: str) -> None:
    affine = AFFINES[name]
    path = _roi_file(tmp_path / "roi.mrk.json", affine, (10, 5, 8), (20, 15, 12), system)
    assert roi_prompt(read_slicer_roi(path), affine, SHAPE) == {"box3d": (10, 5, 8, 20, 15, 12)}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_roi_one_slice_thin_is_a_2d_box_on_that_slice(tmp_path: Path, axis: int) -> None:
    first, last = [10, 5, 8], [20, 15, 12]
    first[axis] = last[axis] = 7
    path = _roi_file(tmp_path / "flat.mrk.json", AFFINES["flipped"], tuple(first), tuple(last))
    rows, cols = (a for a in range(3) if a != axis)
    expected = {"box": (first[rows], first[cols], last[rows], last[cols]), "slice_index": 7, "axis": axis}
    assert roi_prompt(read_slicer_roi(path), AFFINES["flipped"], SHAPE) == expected


def test_a_zero_thickness_roi_between_slices_takes_the_nearest(tmp_path: Path) -> None:
    # A plane at z = 40 + 2.5 * 7.3: between slices 7 and 8, nearer 7.
    path = tmp_path / "plane.mrk.json"
    markup = {"type": "ROI", "coordinateSystem": "RAS", "center": [0.0, -20.0, 40 + 2.5 * 7.3], "size": [8, 8, 0]}
    path.write_text(json.dumps({"markups": [markup]}))
    prompt = roi_prompt(read_slicer_roi(path), AFFINES["flipped"], SHAPE)
    assert prompt["axis"] == 2 and prompt["slice_index"] == 7


def test_a_rotated_roi_covers_its_rotated_extent(tmp_path: Path) -> None:
    quarter_turn = [0, -1, 0, 1, 0, 0, 0, 0, 1]  # about S: the box's first axis points to A
    path = tmp_path / "rotated.mrk.json"
    markup = {"type": "ROI", "coordinateSystem": "RAS", "center": [32, 32, 32], "size": [20, 4, 4]}
    path.write_text(json.dumps({"markups": [{**markup, "orientation": quarter_turn}]}))
    # 1 mm voxels at the RAS origin: 4 mm across R, 20 mm along A, 4 mm along S
    assert roi_prompt(read_slicer_roi(path), np.eye(4), (64, 64, 64)) == {"box3d": (30, 22, 30, 34, 42, 34)}


def test_a_roi_partly_outside_is_clipped_to_the_image(tmp_path: Path) -> None:
    path = _roi_file(tmp_path / "roi.mrk.json", AFFINES["flipped"], (40, 30, 20), (60, 50, 40))
    assert roi_prompt(read_slicer_roi(path), AFFINES["flipped"], SHAPE) == {"box3d": (40, 30, 20, 47, 43, 29)}


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such ROI file"),
        ("{not json", "not a Slicer markups JSON file"),
        ({"markups": {}}, "no 'markups' list"),
        ({"markups": [{"type": "Fiducial"}]}, "found 0 (markup types: ['Fiducial'])"),
        ({"markups": [{"type": "ROI", "center": [0, 0, 0], "size": [1, 1, 1]}] * 2}, "found 2"),
        ({"markups": [{"type": "ROI", "center": [0, 0], "size": [1, 1, 1]}]}, "'center' must be 3 numbers"),
        ({"markups": [{"type": "ROI", "center": [0, 0, 0], "size": [1, -1, 1]}]}, "must not be negative"),
        ({"markups": [{"type": "ROI", "center": [0, 0, "nan"], "size": [1, 1, 1]}]}, "non-finite"),
        ({"markups": [{"type": "ROI", "coordinateSystem": "XYZ", "center": [0, 0, 0], "size": [1, 1, 1]}]}, "XYZ"),
    ],
)
def test_bad_roi_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "roi.mrk.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(PromptError, match=re.escape(message)):
        read_slicer_roi(path)


@pytest.mark.parametrize(
    "first,last,message",
    [((100, 5, 8), (120, 15, 12), "outside the image"), ((10, 5, 8), (10, 5, 12), "thin along axes \\[0, 1\\]")],
)
def test_rois_that_cannot_prompt(tmp_path: Path, first: tuple, last: tuple, message: str) -> None:
    path = _roi_file(tmp_path / "roi.mrk.json", AFFINES["flipped"], first, last)
    with pytest.raises(PromptError, match=message):
        roi_prompt(read_slicer_roi(path), AFFINES["flipped"], SHAPE)
