"""MONAI Label requests as 3D Slicer's MONAI Label module builds them, read by pam_monai.prompts.request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, ellipsoid, object_volume

from pam_monai.errors import PromptError
from pam_monai.inferers import PropagationInferer
from pam_monai.prompts.request import (
    click_steps,
    read_request,
    roi_prompt_from_bounds,
    select_segment,
    slicer_roi_bounds,
)

SHAPE = (48, 44, 30)
# i flipped (as an LPS-stored image read into RAS gives), so Slicer's i pair comes out reversed.
AFFINE = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])


def slicer_roi(first: tuple[float, ...], last: tuple[float, ...], affine: np.ndarray = AFFINE) -> list[int]:
    """What 3D Slicer's MONAI Label module sends for an ROI covering voxel indices ``first..last``.

    It takes the ROI's centre and size in RAS, maps the (centre - size/2) and (centre + size/2) corners to IJK
    with the volume's RAS->IJK matrix, rounds them, and interleaves them as [i0, i1, j0, j1, k0, k1].
    """
    corners = np.c_[np.array([first, last], dtype=float), np.ones(2)] @ affine.T
    centre = corners[:, :3].mean(axis=0)
    size = np.abs(corners[1, :3] - corners[0, :3])
    ras_to_ijk = np.linalg.inv(affine)
    low = ras_to_ijk @ np.r_[centre - size / 2, 1.0]
    high = ras_to_ijk @ np.r_[centre + size / 2, 1.0]
    low_ijk, high_ijk = [round(v) for v in low[:3]], [round(v) for v in high[:3]]
    return [v for pair in zip(low_ijk, high_ijk) for v in pair]


def test_slicer_roi_pairs_are_min_max_per_axis_even_when_reversed() -> None:
    roi = slicer_roi((30, 5, 15), (40, 15, 15))
    assert roi == [40, 30, 5, 15, 15, 15]  # the flipped i axis reverses its pair
    assert slicer_roi_bounds(roi, SHAPE) == ((30, 5, 15), (40, 15, 15))
    prompt = read_request({"roi": roi}, SHAPE)
    assert prompt.base == {"box": [30, 5, 40, 15], "slice": 15, "axis": 2}
    assert prompt.description["type"] == "box"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flat_roi_is_a_box_on_that_slice_along_that_axis(axis: int) -> None:
    first, last = [10, 8, 6], [30, 28, 20]
    first[axis] = last[axis] = 12
    prompt = read_request({"roi": slicer_roi(tuple(first), tuple(last))}, SHAPE)  # no axis sent
    rows, cols = (a for a in range(3) if a != axis)
    assert prompt.axis == axis
    assert prompt.base == {"box": [first[rows], first[cols], last[rows], last[cols]], "slice": 12, "axis": axis}


def test_thick_roi_is_a_3d_box_clipped_to_the_image() -> None:
    prompt = read_request({"roi": [50, -3, 10, 20, 5, 9], "axis": 1}, SHAPE)
    assert prompt.base == {"box3d": [0, 10, 5, 47, 20, 9], "axis": 1}
    assert roi_prompt_from_bounds((1, 2, 3), (4, 5, 6), 2) == {"box3d": [1, 2, 3, 4, 5, 6], "axis": 2}
    with pytest.raises(PromptError, match="thin along axes"):
        roi_prompt_from_bounds((1, 2, 3), (1, 2, 6), 2)


def test_bad_or_empty_rois() -> None:
    assert slicer_roi_bounds([], SHAPE) is None  # Slicer sends [] when no ROI is placed
    with pytest.raises(PromptError, match="no prompt"):
        read_request({"roi": []}, SHAPE)
    with pytest.raises(PromptError, match=r"\[i0, i1, j0, j1, k0, k1\]"):
        read_request({"roi": [1, 2, 3]}, SHAPE)
    with pytest.raises(PromptError, match="outside the image"):
        read_request({"roi": [60, 70, 1, 5, 2, 2]}, SHAPE)
    with pytest.raises(PromptError, match="thin along axes"):
        read_request({"roi": [10, 10, 1, 5, 2, 2]}, SHAPE)
    with pytest.raises(PromptError, match="no area"):
        read_request({"roi": [3, 2, 3, 5], "slice": 2}, SHAPE)
    with pytest.raises(PromptError, match="must be finite"):
        read_request({"roi": [1, "nan", 1, 5, 2, 2]}, SHAPE)
    prompt = read_request({"roi": [5, 1, 20, 9], "slice": 3, "axis": 0}, SHAPE)  # this app's 4-number form
    assert prompt.base == {"box": [5, 1, 20, 9], "slice": 3, "axis": 0}


def test_box_from_a_slicer_roi_lands_on_the_object_and_the_old_reading_misses_it() -> None:
    truth = ellipsoid(SHAPE, (35, 10, 15), (5, 5, 4))
    image = torch.as_tensor(object_volume(truth))[None]
    roi = slicer_roi((29, 4, 15), (41, 16, 15))
    prompt = read_request({"roi": roi}, SHAPE)
    base = prompt.base
    inferer = PropagationInferer(thickness_mm=6)
    result = inferer.propagate(
        image,
        OraclePropMask(),
        OracleBox2Mask(),
        box=tuple(base["box"]),
        slice_index=base["slice"],
        axis=base["axis"],
    )
    labels = result.labels.numpy() > 0
    dice = 2 * (labels & truth).sum() / (labels.sum() + truth.sum())
    assert dice > 0.8
    # The reading before this fix: [x0, y0, x1, y1, z0, z1] -> a box i 5..29 (sorted), j 16..41, far off the object.
    x0, y0, x1, y1 = roi[:4]
    old = np.zeros(SHAPE[:2], bool)
    old[min(x0, x1) : max(x0, x1) + 1, min(y0, y1) : max(y0, y1) + 1] = True
    on_slice = truth[:, :, 15]
    assert 2 * (old & on_slice).sum() / (old.sum() + on_slice.sum()) < 0.05


def test_clicks_as_slicer_sends_them_are_grouped_by_slice_in_click_order() -> None:
    request = {
        "label": "spleen",  # the segment's name, as the deepgrow tool sends it
        "foreground": [[20, 20, 15], [21, 20, 15], [20, 22, 9]],
        "background": [[30, 30, 9], [5, 5, 20]],
        "client_id": "user-xyz",
    }
    prompt = read_request(request, SHAPE)
    assert prompt.base is None and prompt.segment == "spleen" and prompt.client == ("user-xyz", "")
    assert prompt.description == {"axis": 2, "type": "clicks", "foreground": 3, "background": 2}
    assert prompt.steps() == [
        (15, ((20, 20), (21, 20)), ()),
        (9, ((20, 22),), ((30, 30),)),
        (20, (), ((5, 5),)),
    ]
    assert click_steps(prompt.clicks, 0)[0] == (20, ((20, 15), (22, 9)), ())
    # With session_id in the query, MONAI Label adds the session's JSON, whose "name" is its id.
    session = read_request({**request, "session": {"name": "3f2a", "image": "/sessions/3f2a/image.nii.gz"}}, SHAPE)
    assert session.client == ("user-xyz", "3f2a")


def test_bad_clicks() -> None:
    with pytest.raises(PromptError, match="background clicks alone"):
        read_request({"background": [[1, 1, 1]]}, SHAPE)
    with pytest.raises(PromptError, match="outside the image"):
        read_request({"foreground": [[1, 1, 30]]}, SHAPE)
    with pytest.raises(PromptError, match=r"\[i, j, k\]"):
        read_request({"foreground": [[1, 1]]}, SHAPE)
    with pytest.raises(PromptError, match="axis must be"):
        read_request({"foreground": [[1, 1, 1]], "axis": "3"}, SHAPE)


def test_label_is_a_name_unless_uploaded(tmp_path) -> None:  # noqa: ANN001
    existing = tmp_path / "on_the_server.nii.gz"
    existing.write_bytes(b"not to be opened")
    # A path to an existing file in the parameters is a name: never opened, so no prompt.
    with pytest.raises(PromptError, match="no prompt"):
        read_request({"label": str(existing)}, SHAPE)
    prompt = read_request({"label": str(existing), "foreground": [[3, 3, 3]]}, SHAPE)
    assert prompt.segment == str(existing) and prompt.base is None


def test_uploaded_label_on_several_slices_is_a_multi_slice_prompt() -> None:
    truth = ellipsoid(SHAPE, (24, 22, 15), (10, 9, 6))
    label = np.zeros(SHAPE, np.uint8)
    for k in (11, 15, 19):
        label[:, :, k] = truth[:, :, k]
    prompt = read_request({}, SHAPE, uploaded_label=label)
    assert prompt.description["slices"] == [11, 15, 19]
    assert np.array_equal(prompt.base["mask"], label)
    one = read_request({"slice": 15}, SHAPE, uploaded_label=label)
    assert one.description["slices"] == [15]
    with pytest.raises(PromptError, match="nothing on slice 16"):
        read_request({"slice": 16}, SHAPE, uploaded_label=label)
    with pytest.raises(PromptError, match="grid"):
        read_request({}, SHAPE, uploaded_label=label[:10])
    with pytest.raises(PromptError, match="empty"):
        read_request({}, SHAPE, uploaded_label=np.zeros(SHAPE))
    # Slicer's scribbles tool uploads the (still empty) segment with its ROI: the ROI is the prompt.
    roi = read_request({"roi": [10, 30, 10, 30, 4, 4]}, SHAPE, uploaded_label=np.zeros(SHAPE))
    assert roi.base == {"box": [10, 10, 30, 30], "slice": 4, "axis": 2}


def test_scribbles_upload_selects_the_named_segment() -> None:
    label = np.zeros(SHAPE, np.uint8)
    label[10:20, 10:20, 5] = 1
    label[25:35, 25:35, 7] = 2
    request = {
        "roi": [],
        "label_info": [{"name": "liver", "id": 1}, {"name": "spleen", "id": 2}],
        "selected_label_name": "spleen",
    }
    prompt = read_request(request, SHAPE, uploaded_label=label)
    assert prompt.segment == "spleen" and prompt.description["slices"] == [7]
    assert prompt.base["mask"].max() == 1 and prompt.base["mask"].sum() == 100
    values, name = select_segment(label, {})
    assert name is None and values is label
    with pytest.raises(PromptError, match="selected_label_name"):
        read_request({**request, "selected_label_name": "kidney"}, SHAPE, uploaded_label=label)
