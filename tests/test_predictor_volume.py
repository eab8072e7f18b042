"""PAMPredictor on a plain volume and its affine (the command line's way, without MONAI) and on a MetaTensor (the
library's): the same labels and report, and the image as a MetaTensor for those who ask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OraclePropMask, ellipsoid, object_volume
from monai.data import MetaTensor

from pam_monai.errors import ImageError
from pam_monai.predictor import PAMPredictor

SHAPE = (40, 36, 30)
AFFINE = torch.tensor([[0.0, 0, 1.5, -20], [-0.8, 0, 0, 10], [0, 1.2, 0, 5], [0, 0, 0, 1]], dtype=torch.float64)


def _prompt(truth: np.ndarray) -> np.ndarray:
    prompt = np.zeros(SHAPE, np.int16)
    prompt[:, :, 15] = truth[:, :, 15]
    return prompt


def test_a_volume_with_its_affine_segments_as_a_metatensor_does() -> None:
    truth = ellipsoid(SHAPE, (20, 18, 15), (12, 8, 6))
    image = torch.from_numpy(object_volume(truth))
    plain, meta = PAMPredictor(propmask=OraclePropMask()), PAMPredictor(propmask=OraclePropMask())
    plain.set_volume(image, AFFINE.numpy())
    given = MetaTensor(image, affine=AFFINE)
    assert meta.set_image(given) is given and meta.image is given
    first = plain.segment(mask_prompt=_prompt(truth))
    second = meta.segment(mask_prompt=_prompt(truth))
    assert torch.equal(first.labels, second.labels) and first.labels.any()
    report, expected = plain.report(first), meta.report(second)
    report["seconds"] = expected["seconds"] = {}
    assert report == expected
    assert plain.spacing == pytest.approx((0.8, 1.2, 1.5))
    made = plain.image  # made on demand
    assert isinstance(made, MetaTensor) and torch.equal(made.as_tensor(), image)
    assert torch.allclose(made.affine, AFFINE)


def test_set_image_keeps_its_metatensor_face() -> None:
    predictor = PAMPredictor(propmask=OraclePropMask())
    assert predictor.image is None
    image = predictor.set_image(np.zeros((6, 5, 4), np.float32), spacing=(0.5, 0.6, 2.0))
    assert isinstance(image, MetaTensor) and tuple(image.shape) == (6, 5, 4)
    assert predictor.spacing == pytest.approx((0.5, 0.6, 2.0))
    batched = MetaTensor(torch.zeros(1, 6, 5, 4), affine=AFFINE)
    assert tuple(predictor.set_image(batched).shape) == (6, 5, 4) and tuple(predictor.volume.shape) == (6, 5, 4)
    np.testing.assert_array_equal(predictor.affine, AFFINE.numpy())


def test_set_volume_refuses_what_is_not_a_finite_3d_image() -> None:
    predictor = PAMPredictor(propmask=OraclePropMask())
    with pytest.raises(ImageError, match="3D"):
        predictor.set_volume(np.zeros((4, 4)))
    with pytest.raises(ImageError, match="NaN"):
        predictor.set_volume(np.full((4, 4, 4), np.nan))
    predictor.set_volume(np.zeros((1, 4, 5, 6)))
    assert tuple(predictor.volume.shape) == (4, 5, 6) and np.array_equal(predictor.affine, np.eye(4))
