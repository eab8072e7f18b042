"""Per-offset diagnostics: one round of PropMask against copying the guide mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import GuideCopyPropMask, OraclePropMask, ellipsoid, object_volume

from pam_monai.evaluation.diagnostics import offset_profile, summarise_profile
from pam_monai.inferers.propagation import PropagationInferer
from pam_monai.prompts.core import PromptError

REPO = Path(__file__).resolve().parents[2]
SHAPE = (48, 52, 44)


def tapering_object() -> tuple[np.ndarray, np.ndarray]:
    label = ellipsoid(SHAPE, (24, 26, 22), (14, 16, 17)).astype(np.int64)
    return object_volume(label), label


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_oracle_beats_copying_and_copying_decays_with_distance(axis: int) -> None:
    image, label = tapering_object()
    records = offset_profile(image, label, OraclePropMask(), axes=(axis,), max_offset=10)
    summary = summarise_profile(records)
    assert [row["distance"] for row in summary] == list(range(0, 11))  # 0: the guide slice itself
    assert summary[0]["n"] == 1 and all(row["n"] == 2 for row in summary[1:])  # both directions
    assert summary[0]["copy_dsc"] == 1.0 and summary[0]["network_dsc"] > 0.9  # resampled to the input and back
    assert min(row["network_dsc"] for row in summary) > 0.9
    copies = [row["copy_dsc"] for row in summary]
    assert copies == sorted(copies, reverse=True) and copies[-1] < 0.85
    assert summary[-1]["gain"] > 0.1


def test_a_network_that_only_copies_gains_nothing() -> None:
    image, label = tapering_object()
    summary = summarise_profile(offset_profile(image, label, GuideCopyPropMask(), axes=(2,), max_offset=8))
    assert all(abs(row["gain"]) < 0.03 for row in summary)
    # Away from its widest slice the object tapers: the copied mask covers it all and more.
    far = [row for row in summary if row["distance"] >= 5]
    assert all(row["network_sensitivity"] > 0.97 and row["network_precision"] < 0.95 for row in far)


def test_directions_stop_where_the_object_ends() -> None:
    image, label = tapering_object()  # along axis 2 the object spans slices 5..39, widest at 22
    records = offset_profile(image, label, OraclePropMask(), axes=(2,), max_offset=30, min_area=1)
    offsets = sorted(r["offset"] for r in records)
    present = np.nonzero(label.any(axis=(0, 1)))[0]
    guide = int(np.argmax(label.sum(axis=(0, 1))))
    assert offsets[0] == max(present[0] - guide, -30) and offsets[-1] == min(present[-1] - guide, 30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"offsets": [-23, 1]}, "must lie in"),
        ({"offsets": [30]}, "must lie in"),
        ({"guide_mask": np.zeros((48, 52), bool)}, "empty"),
        ({"guide_mask": np.ones((5, 5), bool)}, "shape"),
    ],
)
def test_predict_slices_rejects_bad_requests(kwargs: dict, message: str) -> None:
    image, label = tapering_object()
    request = {"guide_mask": label[..., 22] > 0, "slice_index": 22, "offsets": [1, -1], **kwargs}
    with pytest.raises(PromptError, match=message):
        PropagationInferer().predict_slices(image, OraclePropMask(), **request)


def test_predict_slices_rejects_nan_intensities() -> None:
    image, label = tapering_object()
    image[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PropagationInferer().predict_slices(
            image, OraclePropMask(), guide_mask=label[..., 22] > 0, slice_index=22, offsets=[1]
        )
