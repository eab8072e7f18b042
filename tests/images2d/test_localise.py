"""Localising a guide's object in another image: the maps the localisers find, the crops in the guide's RoI frame
and back, the query's own intensity window, and propagation across images on generated scenes whose masks are
known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OraclePropMask
from scipy import ndimage

from pam_monai.errors import Propagate2DError
from pam_monai.images2d import localise
from pam_monai.images2d.set2d import localised_targets, propagate_to_images
from pam_monai.transforms.functional import square_roi


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def scene(shape, centre, radius, seed: int, scale: float = 1.0, offset: float = 0.0):  # noqa: ANN001, ANN201
    """A bright disc on a smooth textured background, intensities ``scale * v + offset``; returns image, mask."""
    mask = disc(shape, centre, radius)
    background = 30 + 10 * ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 4) * 4
    image = np.where(mask, 100.0, background) + np.random.default_rng(seed + 1).normal(0, 2, shape)
    return (scale * image + offset).astype(np.float32), mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_match_finds_a_moved_and_scaled_object() -> None:
    guide, mask = scene((120, 110), (40, 45), 14, seed=0)
    query, truth = scene((150, 140), (95, 80), 18, seed=5, scale=40.0, offset=-300.0)
    placement = localise.match_object(guide, mask, query)
    centre = placement.matrix @ np.array([40.0, 45.0]) + placement.offset
    assert np.abs(centre - [95, 80]).max() <= 3 and placement.scale == pytest.approx(18 / 14, rel=0.15)
    assert 0.5 < placement.score <= 1.0
    roi, crop = localise.guide_crop(guide, mask, 1.5, 64)
    moved = localise.paste_probability(crop[1], placement, roi, query.shape) > 0.5
    assert dice(moved, truth) > 0.8


def test_match_shrinks_large_objects() -> None:
    guide, mask = scene((300, 400), (150, 180), 70, seed=3)  # a RoI of 211 px: matched on images shrunk 1.65 x
    assert square_roi(torch.from_numpy(mask), 1.5).size > localise.MATCH_SIDE
    itself = localise.match_object(guide, mask, guide)  # the nearest scale tried to 1, centred on the object
    assert itself.scale == pytest.approx(1.0, abs=0.05)
    assert np.abs(itself.matrix @ np.array([150.0, 180.0]) + itself.offset - [150, 180]).max() <= 3
    query, truth = scene((360, 420), (200, 260), 80, seed=4, scale=0.5)
    placement = localise.match_object(guide, mask, query)
    centre = placement.matrix @ np.array([150.0, 180.0]) + placement.offset
    assert np.abs(centre - [200, 260]).max() <= 4 and placement.scale == pytest.approx(80 / 70, rel=0.1)


def aligned_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured guide with a rectangle object, and the query showing it shifted and zoomed on another intensity
    scale (query pixel p shows guide pixel 0.9 p + (8, -4)): guide, mask, query, the query's true mask."""
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3).astype(np.float32)
    mask = np.zeros((96, 96), dtype=bool)
    mask[30:60, 35:55] = True
    image = image + 3.0 * ndimage.gaussian_filter(mask.astype(np.float32), 1)
    matrix, offset = np.diag([0.9, 0.9]), np.array([8.0, -4.0])
    query = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest") * 50 + 7
    truth = ndimage.affine_transform(mask.astype(float), matrix, offset=offset, order=1) >= 0.5
    return image, mask, query, truth


def test_registration_recovers_a_shift_and_a_zoom() -> None:
    image, mask, query, truth = aligned_pair()
    matrix = np.diag([0.9, 0.9])
    placement = localise.place(image, mask, query, "register")
    np.testing.assert_allclose(placement.matrix, np.linalg.inv(matrix), atol=0.05)
    roi, crop = localise.guide_crop(image, mask, 1.5, 64)
    assert dice(localise.paste_probability(crop[1], placement, roi, query.shape) > 0.5, truth) > 0.9


def test_warped_guide_mask_and_how_well_its_registration_aligns(monkeypatch: pytest.MonkeyPatch) -> None:
    image, mask, query, truth = aligned_pair()
    roi, crop = localise.guide_crop(image, mask, 1.5, 64)
    warped, score = localise.warped_guide_mask(image, mask, crop, roi, query)
    assert warped.shape == query.shape and warped.dtype == np.float32 and 0.0 <= warped.min() <= warped.max() <= 1.0
    assert dice(warped >= 0.5, truth) > 0.9 and localise.REGISTERED_THRESHOLD < score <= 1.0
    other, other_mask = scene((80, 80), (40, 40), 10, seed=7)  # another scene: its registration aligns badly
    other_roi, other_crop = localise.guide_crop(other, other_mask, 1.5, 64)
    assert localise.warped_guide_mask(other, other_mask, other_crop, other_roi, query)[1] < 0.5
    placement = localise.register_guide(image, query)

    def refuse(*args: object) -> localise.Placement:
        raise AssertionError("registered again although the registration was given")

    monkeypatch.setattr(localise, "register_guide", refuse)
    again, same = localise.warped_guide_mask(image, mask, crop, roi, query, placement)
    np.testing.assert_allclose(again, warped, atol=1e-5)
    assert same == pytest.approx(score)


class CertainPropMask(OraclePropMask):
    """Foreground everywhere in every query crop: what a registered mask adds shows alone."""

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        logits = torch.cat((-10 * torch.ones_like(queries), 10 * torch.ones_like(queries)), dim=1)
        return [logits, logits[..., ::2, ::2], logits[..., ::4, ::4]]


def test_registered_mask_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from pam_monai.images2d import set2d

    image, mask, query, truth = aligned_pair()
    guides = [(image, mask)]

    def run(rule: str, localiser: str = "match") -> np.ndarray:
        return propagate_to_images(guides, [query], CertainPropMask(), localise=localiser, registered_mask=rule)[0][1]

    off, on = run("off"), run("on")
    assert dice(on, truth) > 0.9 and on.sum() < off.sum()  # off: the whole RoI square; on: the warped mask in it
    assert np.array_equal(run("auto"), on)  # these images align: the registration correlates above 0.6
    assert np.array_equal(run("on", "register"), on)
    monkeypatch.setattr(set2d, "REGISTERED_THRESHOLD", 1.01)
    assert np.array_equal(run("auto"), off)
    monkeypatch.undo()

    def degenerate(*args: object) -> tuple[np.ndarray, float]:
        raise Propagate2DError("registering a guide to a query gave a degenerate map (no usable alignment).")

    monkeypatch.setattr(set2d, "warped_guide_mask", degenerate)
    assert np.array_equal(run("auto"), off)  # auto: the images do not align; on: the error
    with pytest.raises(Propagate2DError, match="degenerate map"):
        run("on")
    for kwargs, message in (
        ({"registered_mask": "always"}, "unknown registered-mask rule 'always'"),
        ({"registered_mask": "on", "localise": "none"}, "localised path only"),
    ):
        with pytest.raises(Propagate2DError, match=message) as raised:
            propagate_to_images(guides, [query], CertainPropMask(), **kwargs)
        assert "\n" not in str(raised.value)


def test_auto_keeps_a_strong_match_and_registers_below_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    guide, mask = scene((120, 110), (40, 45), 14, seed=0)
    query, _ = scene((150, 140), (95, 80), 18, seed=5, scale=40.0, offset=-300.0)
    matched = localise.match_object(guide, mask, query)
    registered = localise.register_guide(guide, query)
    calls: list[str] = []

    def register(*args: object) -> localise.Placement:
        calls.append("register")
        return registered

    monkeypatch.setattr(localise, "register_guide", register)
    kept = localise.place(guide, mask, query, "auto", threshold=matched.score - 0.01)
    assert kept.score == matched.score and calls == []
    np.testing.assert_allclose(kept.offset, matched.offset)
    assert localise.place(guide, mask, query, "auto", threshold=matched.score + 0.01) is registered
    assert calls == ["register"]
    monkeypatch.setattr(localise, "AUTO_THRESHOLD", 1.5)  # the default threshold is read at each call
    assert localise.place(guide, mask, query, "auto") is registered and len(calls) == 2


def test_crops_in_the_guide_frame_and_back() -> None:
    guide, mask = scene((100, 90), (50, 40), 12, seed=1)
    roi, crop = localise.guide_crop(guide, mask, 1.5, 64)
    assert roi.size == int(1.5 * 25) and crop.shape == (2, 64, 64)
    identity = localise.Placement(np.eye(2), np.zeros(2))
    # the query resampled through the identity is the guide's own crop; a mask pasted back lands where it was
    np.testing.assert_allclose(localise.query_crop(guide, identity, roi, 64), crop[0], atol=2.0)
    assert dice(localise.paste_probability(crop[1], identity, roi, guide.shape) > 0.5, mask) > 0.95
    shifted = localise.Placement(np.eye(2) * 2.0, np.array([-20.0, 30.0]))  # a query twice as large, moved
    big = ndimage.zoom(guide, 2.0, order=1)
    padded = np.zeros((260, 240), dtype=np.float32)
    padded[:200, 30:210] = big[:, :180]
    moved = np.zeros_like(padded)
    moved[:180] = padded[20:200]
    assert localise.correlation(localise.query_crop(moved, shifted, roi, 64), crop[0]) > 0.95
    back = localise.paste_probability(crop[1], shifted, roi, moved.shape) > 0.5
    assert dice(back, disc(moved.shape, (80, 110), 24)) > 0.9
    assert localise.correlation(crop[0], crop[0] * 3 + 1) == pytest.approx(1.0)
    assert localise.correlation(crop[0], np.ones_like(crop[0])) == 0.0


@pytest.mark.parametrize("kind", localise.QUERY_WINDOWS)
def test_query_window_follows_the_query_intensity_scale(kind: str) -> None:
    guide, mask = scene((80, 80), (40, 40), 15, seed=2)
    roi, crop = localise.guide_crop(guide, mask, 1.5, 48)
    window = localise.query_window(crop[0], *crop, (90.0, 100.0), "mask")
    rescaled = localise.query_window(crop[0] * 20 + 500, *crop, window, kind)
    np.testing.assert_allclose(rescaled, (window[0] * 20 + 500, window[1] * 20 + 500), rtol=0.02)
    with pytest.raises(Propagate2DError, match="unknown query window 'minmax'"):
        localise.query_window(crop[0], *crop, window, "minmax")


def test_localised_propagation_across_scenes_and_intensity_scales() -> None:
    guides = [scene((100, 100), (30, 35), 12, seed=10), scene((90, 120), (60, 80), 15, seed=20)]
    query, truth = scene((140, 130), (90, 40), 16, seed=30, scale=60.0, offset=1000.0)
    network = OraclePropMask()
    (probability, mask), *_ = propagate_to_images(guides, [query], network)
    assert probability.shape == mask.shape == query.shape and dice(mask, truth) > 0.9
    assert network.calls == [1]  # "best": only the best-placed guide's pair is run
    mean = localised_targets(OraclePropMask(), guides, [query], "match", "mean")[0][1]
    assert dice(mean, truth) > 0.9
    # the whole-image path windows the query with the guides' window: on another intensity scale it saturates
    whole = propagate_to_images(guides, [query], OraclePropMask(), localise="none")[0][1]
    assert dice(whole, truth) < 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"localise": "nearest"}, "unknown localiser 'nearest'"),
        ({"localise": "Auto"}, "unknown localiser 'Auto'"),
        ({"fusion": "max"}, "unknown fusion 'max'"),
        ({"roi_scale": 0.5}, "roi_scale >= 1"),
        ({"window_kind": "fixed"}, "unknown query window 'fixed'"),
    ],
)
def test_bad_options_raise_one_line(kwargs: dict, message: str) -> None:
    guides = [scene((64, 64), (32, 32), 10, seed=0)]
    with pytest.raises(Propagate2DError, match=message) as raised:
        localised_targets(OraclePropMask(), guides, [guides[0][0]], **kwargs)
    assert "\n" not in str(raised.value)
    with pytest.raises(Propagate2DError, match="unknown localiser 'everywhere'"):
        propagate_to_images(guides, [guides[0][0]], OraclePropMask(), localise="everywhere")
