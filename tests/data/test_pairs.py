"""Cross-scene pairs: one object in independent scenes (pam_monai.data.synthetic.pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from pam_monai.data.synthetic.pairs import PAIR_FAMILIES, generate_scene_pair


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def test_shapes_dtypes_and_non_empty_masks() -> None:
    pair = generate_scene_pair(3, size=64, num_queries=3)
    assert pair.guide_image.shape == pair.guide_mask.shape == (64, 64)
    assert pair.query_images.shape == pair.query_masks.shape == (3, 64, 64)
    assert pair.guide_image.dtype == pair.query_images.dtype == np.float32
    assert pair.guide_mask.dtype == pair.query_masks.dtype == np.bool_
    assert pair.guide_mask.sum() > 0 and all(m.sum() > 0 for m in pair.query_masks)
    assert np.isfinite(pair.guide_image).all() and np.isfinite(pair.query_images).all()
    assert pair.family in PAIR_FAMILIES and pair.modality in ("CT", "MR") and pair.placements.shape == (4, 6)
    assert tuple(pair.placements[0, 4:]) == (1.0, 0.0)  # the guide is the intensity reference


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    one, two, other = generate_scene_pair(5, 48, 2), generate_scene_pair(5, 48, 2), generate_scene_pair(6, 48, 2)
    for name in ("guide_image", "guide_mask", "query_images", "query_masks", "placements"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    assert not np.array_equal(one.guide_image, other.guide_image)


def test_guide_and_queries_are_different_scenes() -> None:
    """The object moves and changes size between scenes, and the backgrounds differ."""
    shifts, ratios = [], []
    for seed in range(8):
        pair = generate_scene_pair(seed, size=96, num_queries=2)
        for query, mask in zip(pair.query_images, pair.query_masks):
            shifts.append(np.linalg.norm(centroid(mask) - centroid(pair.guide_mask)))
            ratios.append(mask.sum() / pair.guide_mask.sum())
            outside = ~(mask | pair.guide_mask)
            assert np.corrcoef(query[outside], pair.guide_image[outside])[0, 1] < 0.9
        assert not any(np.array_equal(mask, pair.guide_mask) for mask in pair.query_masks)
    assert np.median(shifts) > 10.0  # pixels, in a 96-pixel scene
    assert max(ratios) / min(ratios) > 3.0 and min(ratios) < 0.8 and max(ratios) > 1.25


@pytest.mark.parametrize("family", ["ellipsoid", "vessel", "sheet", "torus"])
def test_every_family_can_be_asked_for(family: str) -> None:
    pair = generate_scene_pair(1, size=64, family=family, modality="mr")
    assert pair.family == family and pair.modality == "MR" and pair.query_masks[0].any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 16}, "size"),
        ({"num_queries": 0}, "num_queries"),
        ({"family": "cube"}, "family"),
        ({"modality": "PET"}, "modality"),
        ({"diameter_range": (0.5, 0.2)}, "diameter_range"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_scene_pair(0, **{"size": 64, **kwargs})
