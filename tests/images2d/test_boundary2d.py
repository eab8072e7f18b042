"""Ring refinement of a propagated foreground with intensities learnt from the guides."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pam_monai.errors import Propagate2DError
from pam_monai.images2d.boundary2d import (
    RefiningStream,
    RingRefinement,
    calibrate_ring_refinement,
    dice,
    intensity_log_ratio,
    ring,
)


def ellipses(shape: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """Boolean mask of ``count`` separate ellipses with axes of 10-18 px (half-axes 5-9)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask, centres = np.zeros(shape, dtype=bool), []
    while len(centres) < count:
        r, c = rng.uniform(12, shape[0] - 12), rng.uniform(12, shape[1] - 12)
        if any(np.hypot(r - r2, c - c2) < 24 for r2, c2 in centres):
            continue
        centres.append((r, c))
        a, b, angle = rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(0, np.pi)
        u = (cols - c) * np.cos(angle) + (rows - r) * np.sin(angle)
        v = -(cols - c) * np.sin(angle) + (rows - r) * np.cos(angle)
        mask |= (u / a) ** 2 + (v / b) ** 2 <= 1
    return mask


def render(mask: np.ndarray, seed: int, contrast: float = 140.0) -> np.ndarray:
    """Dark objects on a bright noisy background (``contrast`` 0: object and background alike)."""
    noise = np.random.default_rng(seed).normal(0, 15, mask.shape)
    return (np.where(mask, 200 - contrast, 200) + noise).astype(np.float32)


def soft_network(mask: np.ndarray) -> np.ndarray:
    """A network's smooth boundary: the mask grown by one pixel and blurred (a ring outside is foreground)."""
    return ndimage.gaussian_filter(ndimage.binary_dilation(mask).astype(np.float32), 1.2)


def test_refinement_raises_dice_on_generated_ellipses() -> None:
    guide_mask, target_mask = ellipses((160, 160), 12, seed=0), ellipses((200, 240), 30, seed=1)
    guides = [(render(guide_mask, 10), guide_mask)]
    refinement = calibrate_ring_refinement(guides, [soft_network(guide_mask)])
    assert refinement.radius > 0 and refinement.guide_dice[1] > refinement.guide_dice[0]
    probability = soft_network(target_mask)
    before = dice(probability > 0.5, target_mask)
    after = dice(refinement(probability, render(target_mask, 11)), target_mask)
    assert before < 0.9 and after > 0.98, (before, after)
    _, n_before = ndimage.label(probability > 0.5)
    _, n_after = ndimage.label(refinement(probability, render(target_mask, 11)))
    assert n_before == n_after == 30


def test_no_refinement_where_intensity_does_not_help() -> None:
    mask = ellipses((160, 160), 12, seed=2)
    flat = [(render(mask, 3, contrast=0.0), mask)]  # the intensity tells nothing
    refinement = calibrate_ring_refinement(flat, [soft_network(mask)])
    assert refinement.radius == 0
    probability = soft_network(mask)
    np.testing.assert_array_equal(refinement(probability, flat[0][0]), probability > 0.5)
    exact = [(render(mask, 3), mask)]  # an exact network leaves nothing to gain
    assert calibrate_ring_refinement(exact, [mask.astype(np.float32)]).radius == 0


def test_log_ratio_sign_follows_the_guides() -> None:
    mask = ellipses((120, 120), 8, seed=4)
    edges, log_ratio = intensity_log_ratio([(render(mask, 5), mask)])
    centre = lambda value: log_ratio[np.clip(np.searchsorted(edges, value) - 1, 0, len(log_ratio) - 1)]  # noqa: E731
    assert centre(60.0) > 2 and centre(200.0) < -2  # dark = object
    edges, log_ratio = intensity_log_ratio([(400 - render(mask, 5), mask)])
    assert centre(340.0) > 2 and centre(200.0) < -2  # bright = object
    with pytest.raises(Propagate2DError, match="no boundary"):
        intensity_log_ratio([(render(mask, 5), np.ones_like(mask))])


@pytest.mark.parametrize(("radius", "rows"), [(3, [7, 1, 2, 40, 5, 150]), (1, [200, 5]), (2, [1] * 12 + [193])])
def test_stream_matches_whole_image(radius: int, rows: list[int]) -> None:
    mask = ellipses((205, 90), 10, seed=6)
    image, probability = render(mask, 7), soft_network(mask)
    edges, log_ratio = intensity_log_ratio([(image, mask)])
    refinement = RingRefinement(edges, log_ratio, radius, 0.25)
    expected = refinement(probability, image)
    assert (expected != (probability > 0.5)).any()
    bands: list[tuple[int, np.ndarray]] = []
    stream = RefiningStream(
        refinement, lambda r0, r1: image[r0:r1], lambda top, fg: bands.append((top, fg)), mask.shape[0]
    )
    top = 0
    for count in rows:
        stream.push(top, probability[top : top + count])
        top += count
    assert [t for t, _ in bands] == list(np.cumsum([0] + [len(b) for _, b in bands[:-1]]))
    np.testing.assert_array_equal(np.concatenate([b for _, b in bands]), expected)
    with pytest.raises(Propagate2DError, match="out of order"):
        stream.push(3, probability[:2])


def test_ring_keeps_the_image_border() -> None:
    square = np.zeros((10, 10), dtype=bool)
    square[:, :5] = True
    band = ring(square, 1)
    assert band[:, 4:6].all() and not band[:, :4].any() and not band[:, 6:].any()
