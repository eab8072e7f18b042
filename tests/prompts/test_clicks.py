from __future__ import annotations

import numpy as np
import pytest

from pam_monai.errors import PromptError
from pam_monai.prompts.clicks import (
    ClickGrowing,
    correct_plane,
    cut_with_background,
    grow_from_clicks,
    keep_touching,
)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy 64x64 slice: a bright disc (the object) touching a darker square (a neighbour)."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:64, :64]
    disc = (rr - 30) ** 2 + (cc - 24) ** 2 <= 10**2
    square = (rr >= 22) & (rr < 38) & (cc >= 34) & (cc < 50)
    plane = np.full((64, 64), 20.0)
    plane[square] = 60.0
    plane[disc] = 100.0
    plane += rng.normal(0, 3, plane.shape)
    return plane, disc, square


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_grow_from_one_click_finds_the_disc() -> None:
    plane, disc, _ = _scene()
    mask = grow_from_clicks(plane, [(30, 24)])
    assert _dice(mask, disc) > 0.9


def test_grow_limited_to_a_box_and_cut_by_background() -> None:
    plane, disc, _ = _scene()
    mask = grow_from_clicks(plane, [(30, 24)], limit=(20, 14, 40, 24))
    assert mask.any() and not mask[:, 25:].any() and not mask[:20].any()
    cut = grow_from_clicks(plane, [(30, 18)], background=[(30, 30)])
    assert not cut[:, 25:].any() and _dice(cut, disc & (np.mgrid[:64, :64][1] < 24)) > 0.8


def test_grow_bad_input_is_one_line() -> None:
    plane, _, _ = _scene()
    with pytest.raises(PromptError, match="at least one foreground"):
        grow_from_clicks(plane, [])
    with pytest.raises(PromptError, match="outside the slice"):
        grow_from_clicks(plane, [(70, 3)])
    with pytest.raises(PromptError, match="inside the box"):
        grow_from_clicks(plane, [(30, 24)], limit=(0, 0, 5, 5))
    bad = plane.copy()
    bad[0, 0] = np.nan
    with pytest.raises(PromptError, match="NaN"):
        grow_from_clicks(bad, [(30, 24)])


def test_positive_click_outside_adds_the_missing_part() -> None:
    plane, disc, _ = _scene()
    left = disc & (np.mgrid[:64, :64][1] < 24)
    fixed = correct_plane(left, plane, positive=[(30, 29)], negative=[])
    assert left.sum() < fixed.sum()
    assert (fixed & left).sum() == left.sum()  # nothing already there is lost
    assert _dice(fixed, disc) > 0.9  # the added region stops at the disc's border, not in the darker square


def test_positive_click_region_is_bounded_by_the_mask_area() -> None:
    rng = np.random.default_rng(1)
    plane = 50.0 + rng.normal(0, 1, (64, 64))  # flat: a flood would take the whole slice
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:16, 10:16] = True
    fixed = correct_plane(mask, plane, positive=[(40, 40)], negative=[], settings=ClickGrowing(max_growth=1.0))
    assert fixed[40, 40]
    assert fixed.sum() - mask.sum() <= mask.sum()


def test_positive_click_on_an_empty_slice_grows_like_a_first_click() -> None:
    plane, disc, _ = _scene()
    fixed = correct_plane(np.zeros((64, 64), dtype=bool), plane, positive=[(30, 24)], negative=[])
    assert _dice(fixed, disc) > 0.9


def test_negative_click_on_a_leak_trims_it_and_keeps_the_object() -> None:
    plane, disc, square = _scene()
    leaked = disc | square
    fixed = correct_plane(leaked, plane, positive=[(30, 24)], negative=[(30, 44)])
    assert fixed[30, 24] and not fixed[30, 44]
    assert _dice(fixed, disc) > 0.85
    # Without a positive click the component's deepest pixel is the evidence: the disc's centre side is kept.
    alone = correct_plane(leaked, plane, positive=[], negative=[(30, 46)])
    assert alone[30, 20] and not alone[30, 46]


def test_negative_click_removes_a_stray_island_or_a_clicked_core() -> None:
    plane, disc, _ = _scene()
    island = np.zeros_like(disc)
    island[50:56, 50:56] = True
    fixed = correct_plane(disc | island, plane, positive=[], negative=[(51, 51)])
    assert not fixed[50:56, 50:56].any() and (fixed == disc).all()
    gone = correct_plane(disc, plane, positive=[], negative=[(30, 24)])  # the centre of the only component
    assert not gone.any()
    kept = correct_plane(disc, plane, positive=[(30, 24)], negative=[(30, 33)])  # a positive click protects it
    assert kept[30, 24] and not kept[30, 33] and kept.sum() > 0.6 * disc.sum()


def test_clicks_that_change_nothing() -> None:
    plane, disc, _ = _scene()
    same = correct_plane(disc, plane, positive=[(30, 24)], negative=[(5, 5)])
    assert (same == disc).all()


def test_correction_bad_input_is_one_line() -> None:
    plane, disc, _ = _scene()
    with pytest.raises(PromptError, match="at least one"):
        correct_plane(disc, plane, [], [])
    with pytest.raises(PromptError, match="outside the slice"):
        correct_plane(disc, plane, [(0, 64)], [])
    with pytest.raises(PromptError, match="shape"):
        correct_plane(disc[:10], plane, [(1, 1)], [])


def test_helpers() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:3, 1:3] = True
    mask[6:9, 6:9] = True
    assert keep_touching(mask, [(7, 7)]).sum() == 9
    assert not keep_touching(mask, [(5, 5)]).any()
    assert not cut_with_background(mask, [], [(0, 0)]).any()
    assert (cut_with_background(mask, [(1, 1)], []) == mask).all()
