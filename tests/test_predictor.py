"""PAMPredictor: one image, several prompts, Slicer ROIs, and reports along the propagation's own axis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, ellipsoid, object_volume
from monai.data import MetaTensor

from pam_monai.errors import PromptError
from pam_monai.predictor import PAMPredictor

SHAPE = (40, 36, 30)
AFFINE = torch.tensor([[0.0, 0, 1.5, -20], [-0.8, 0, 0, 10], [0, 1.2, 0, 5], [0, 0, 0, 1]], dtype=torch.float64)


@pytest.fixture
def predictor() -> PAMPredictor:
    truth = ellipsoid(SHAPE, (20, 18, 15), (12, 8, 6))
    predictor = PAMPredictor(propmask=OraclePropMask(), box2mask=OracleBox2Mask())
    predictor.set_image(MetaTensor(torch.from_numpy(object_volume(truth)), affine=AFFINE))
    predictor.truth = truth  # type: ignore[attr-defined]
    return predictor


def _roi(path: Path, first: tuple[float, ...], last: tuple[float, ...]) -> Path:
    corners = np.array([[*first, 1.0], [*last, 1.0]]) @ AFFINE.numpy().T
    markup = {
        "type": "ROI",
        "coordinateSystem": "RAS",
        "center": corners[:, :3].mean(axis=0).tolist(),
        "size": np.abs(corners[1, :3] - corners[0, :3]).tolist(),
    }
    path.write_text(json.dumps({"markups": [markup]}))
    return path


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_flat_slicer_roi_prompts_along_its_own_axis_and_the_report_follows(
    predictor: PAMPredictor, tmp_path: Path, axis: int
) -> None:
    truth = predictor.truth  # type: ignore[attr-defined]
    first, last = [7.5, 9.5, 8.5], [32.5, 26.5, 21.5]  # around the ellipsoid
    first[axis] = last[axis] = SHAPE[axis] // 2
    prompt = predictor.roi_prompt(_roi(tmp_path / "roi.mrk.json", tuple(first), tuple(last)))
    assert prompt["axis"] == axis and prompt["slice_index"] == SHAPE[axis] // 2
    result = predictor.segment(**prompt)
    assert result.axis == axis
    found = result.labels.numpy() > 0
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.9
    covered = predictor.report(result)["objects"][0]["slices_covered"]
    along = np.nonzero(found.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    assert (covered["first"], covered["last"], covered["count"]) == (int(along[0]), int(along[-1]), len(along))


def test_a_solid_slicer_roi_is_a_3d_box(predictor: PAMPredictor, tmp_path: Path) -> None:
    prompt = predictor.roi_prompt(_roi(tmp_path / "roi.mrk.json", (7.5, 9.5, 8.5), (32.5, 26.5, 21.5)))
    assert prompt == {"box3d": (8, 10, 9, 32, 26, 21)}
    found = predictor.segment(**prompt).labels.numpy() > 0
    assert found.any() and not found[:, :, :9].any() and not found[:, :, 22:].any()


def test_a_slicer_roi_outside_the_image_is_refused(predictor: PAMPredictor, tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="outside the image"):
        predictor.roi_prompt(_roi(tmp_path / "roi.mrk.json", (50.5, 9.5, 8.5), (60.5, 26.5, 21.5)))


def test_roi_prompt_needs_an_image(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="set_image"):
        PAMPredictor(propmask=OraclePropMask()).roi_prompt(tmp_path / "roi.mrk.json")
