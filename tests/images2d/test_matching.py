"""Template matching over positions, sizes and angles: a textured object turned and resized in another scene is
found at its angle and size, and the guide's mask carried by the match lands on it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pam_monai.errors import Propagate2DError
from pam_monai.images2d import localise, matching

CANONICAL = 64  # side of the frame the object is drawn in; its centre is at (CANONICAL - 1) / 2


def canonical_object() -> tuple[np.ndarray, np.ndarray]:
    """An elongated ellipse with a notch on one side and a texture of its own: no rotation maps it onto itself."""
    rows, cols = np.mgrid[:CANONICAL, :CANONICAL] - (CANONICAL - 1) / 2
    mask = (rows / 12) ** 2 + (cols / 24) ** 2 <= 1
    mask &= ~((rows < -2) & (np.abs(cols - 10) < 5))
    texture = ndimage.gaussian_filter(np.random.default_rng(7).normal(size=mask.shape), 2) * 40
    return np.where(mask, 120.0 + texture, 0.0), mask.astype(np.float64)


def scene(shape: tuple[int, int], matrix: np.ndarray, centre: tuple[float, float], seed: int):  # noqa: ANN201
    """The canonical object mapped into a scene (canonical pixel ``c`` -> scene pixel ``matrix @ (c - c0) +
    centre``) over a background of its own; returns image, mask."""
    layer, mask = canonical_object()
    inverse = np.linalg.inv(matrix)
    c0 = np.full(2, (CANONICAL - 1) / 2)
    offset = c0 - inverse @ np.asarray(centre, dtype=np.float64)
    warped = ndimage.affine_transform(layer, inverse, offset=offset, output_shape=shape, order=1)
    inside = ndimage.affine_transform(mask, inverse, offset=offset, output_shape=shape, order=1) >= 0.5
    rng = np.random.default_rng(seed)
    background = 40 + 60 * ndimage.gaussian_filter(rng.normal(size=shape), 6)
    image = np.where(inside, warped, background) + rng.normal(0, 2, shape)
    return image.astype(np.float32), inside


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def angle_gap(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_rotation_is_counter_clockwise_as_displayed() -> None:
    right = np.array([0.0, 1.0])  # one column to the right
    np.testing.assert_allclose(matching.rotation(90) @ right, [-1.0, 0.0], atol=1e-12)  # one row up
    np.testing.assert_array_equal(matching.rotation(0), np.eye(2))
    placement = matching.Placement(1.5 * matching.rotation(-120), np.zeros(2))
    assert placement.angle == pytest.approx(-120) and placement.scale == pytest.approx(1.5)


@pytest.mark.parametrize("angle", [0.0, 40.0, 90.0, 135.0, -150.0])
def test_a_turned_and_resized_object_is_found_at_its_angle_and_size(angle: float) -> None:
    guide, mask = scene((120, 110), np.eye(2), (50, 48), seed=1)
    size = 1.3
    query, truth = scene((150, 150), size * matching.rotation(angle), (90, 70), seed=2)
    angles = tuple(float(a) for a in range(0, 360, 15))
    placement = matching.match_object(guide, mask, query, angles=angles)
    assert angle_gap(placement.angle, angle) <= 10 and placement.scale == pytest.approx(size, rel=0.1)
    assert np.abs(placement.matrix @ np.array([50.0, 48.0]) + placement.offset - [90, 70]).max() <= 3
    roi, crop = localise.guide_crop(guide, mask, 1.5, 64)
    moved = localise.paste_probability(crop[1], placement, roi, query.shape) > 0.5
    assert dice(moved, truth) > 0.8


def test_without_the_angle_a_turned_object_is_missed_and_the_margin_keeps_upright() -> None:
    guide, mask = scene((120, 110), np.eye(2), (50, 48), seed=1)
    query, truth = scene((150, 150), matching.rotation(90), (90, 70), seed=2)
    upright = matching.match_object(guide, mask, query, angles=(0.0,))
    turned = matching.match_object(guide, mask, query, angles=(0.0, 90.0))
    assert turned.score > upright.score and angle_gap(turned.angle, 90) < 1e-6 and upright.angle == 0.0
    # a turned match must beat the upright one by the margin: by more than the gap, the upright one stays
    kept = matching.match_object(guide, mask, query, angles=(0.0, 90.0), margin=turned.score - upright.score + 0.01)
    np.testing.assert_array_equal(kept.matrix, upright.matrix)
    assert kept.score == upright.score
    below = matching.match_object(guide, mask, query, angles=(0.0, 90.0), margin=turned.score - upright.score - 0.01)
    assert below.score == turned.score
    roi, crop = localise.guide_crop(guide, mask, 1.5, 64)
    found = [localise.paste_probability(crop[1], p, roi, query.shape) > 0.5 for p in (upright, turned)]
    assert dice(found[1], truth) > 0.8 > dice(found[0], truth)


@pytest.mark.parametrize(("scales", "angles"), [((), (0.0,)), ((1.0,), ())])
def test_an_empty_search_raises_one_line(scales: tuple, angles: tuple) -> None:
    guide, mask = scene((80, 80), np.eye(2), (40, 40), seed=3)
    with pytest.raises(Propagate2DError, match="at least one scale and one angle") as raised:
        matching.match_object(guide, mask, guide, scales=scales, angles=angles)
    assert "\n" not in str(raised.value)


def test_localise_names_the_matching_defaults() -> None:
    assert localise.match_object is matching.match_object and localise.Placement is matching.Placement
    assert localise.MATCH_ANGLES == matching.MATCH_ANGLES and localise.MATCH_SCALES == matching.MATCH_SCALES
    assert 0.0 in matching.MATCH_ANGLES  # an upright object keeps its upright match
