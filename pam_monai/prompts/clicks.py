"""Foreground/background clicks on one slice: grow a mask from them, or correct a slice's current mask with them.

Coordinates are ``(row, col)`` pixel indices of the ``(H, W)`` slice (the two array axes other than the
propagation axis, in increasing order). Every function here is pure numpy / scipy / scikit-image.

The two rules:

- :func:`grow_from_clicks` makes a new mask from clicks alone (a first prompt).
- :func:`correct_plane` edits an existing mask (a correction of a result on one slice):

  1. A positive click outside the mask adds the region grown from it: an intensity flood fill
     (``skimage.segmentation.flood``, 8-connected) of the 3x3 median-filtered slice around the click's level,
     with a tolerance of ``tolerance`` x the spread of intensities inside the current mask (median absolute
     deviation, never below the slice's noise level). The region may be at most ``max_growth`` x the mask's area
     (``max_fraction`` of the slice when the mask is small): a larger one has leaked, and the tolerance shrinks
     until it fits. Pixels nearer to a negative click than to every positive click are left out. A positive click
     inside the mask changes nothing but protects its surroundings from negative clicks.
  2. A negative click inside the mask removes part of the connected component (8-connected) it hits. The
     component's positive evidence is the positive clicks inside it, or, when there is none, its deepest pixel
     (farthest from the component's border). If the component holds no positive click and either is not the
     largest component of the slice, or the click lies in its core (at least half as deep as the deepest pixel),
     the whole component goes: the user says "this is not the object". Otherwise the pixels of the component
     nearer to a negative click than to every piece of positive evidence are removed, and pieces cut off from the
     evidence go with them. A negative click outside the mask changes nothing.

  Positive clicks are applied first, then negative ones. The result may be empty (the object is not on this
  slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import flood

from pam_monai.errors import PromptError

__all__ = [
    "ClickGrowing",
    "correct_plane",
    "cut_with_background",
    "disc",
    "grow_from_clicks",
    "keep_touching",
    "noise_sigma",
]

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(kw_only=True)
class ClickGrowing:
    """Settings of the region growing that turns clicks into a mask on one slice.

    Attributes:
        window: side of the square around a click whose (median-filtered) intensities give the object's level.
        tolerance: how many intensity deviations from that level a pixel may be and still join: the slice's
            noise level for :func:`grow_from_clicks`, the spread inside the current mask for :func:`correct_plane`.
        max_fraction: a region larger than this fraction of the slice (or than the box) is taken as a leak into
            the background: the tolerance shrinks (x0.7, up to ``shrink_steps`` times) until it is not.
        max_growth: in :func:`correct_plane`, a region added by one positive click may be at most this many times
            the current mask's area (at least ``max_fraction`` of the slice when the mask is smaller than
            ``min_pixels``).
        shrink_steps: how many times the tolerance may shrink.
        min_pixels: a region smaller than this becomes a disc of radius ``fallback_radius`` around the click.
        fallback_radius: the radius of that disc.
    """

    window: int = 5
    tolerance: float = 3.0
    max_fraction: float = 0.25
    max_growth: float = 2.0
    shrink_steps: int = 8
    min_pixels: int = 9
    fallback_radius: int = 3


def noise_sigma(plane: np.ndarray, smooth: np.ndarray) -> float:
    """Robust noise level of a slice: 1.4826 x the median absolute residual of a 3x3 median filter (x1.5).

    Args:
        plane: ``(H, W)`` intensities.
        smooth: ``(H, W)`` the same slice after a 3x3 median filter.
    """
    residual = np.abs(plane - smooth)
    sigma = 1.4826 * float(np.median(residual)) * 1.5  # the 3x3 median removes part of the noise: x1.5
    if sigma <= 0:
        spread = float(np.percentile(plane, 99) - np.percentile(plane, 1))
        sigma = 0.01 * spread if spread > 0 else 1.0
    return sigma


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    """An ``(H, W)`` boolean disc of ``radius`` pixels around ``centre`` (row, col)."""
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def keep_touching(mask: np.ndarray, seeds: Sequence[tuple[int, int]]) -> np.ndarray:
    """The connected components (8-connected) of an ``(H, W)`` ``mask`` that contain a seed pixel."""
    components, _ = ndimage.label(mask, structure=_EIGHT)
    keep = {int(components[r, c]) for r, c in seeds if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]}
    keep.discard(0)
    return np.isin(components, sorted(keep)) if keep else np.zeros_like(mask, dtype=bool)


def cut_with_background(
    mask: np.ndarray, foreground: Sequence[Sequence[float]], background: Sequence[Sequence[float]]
) -> np.ndarray:
    """Drop the pixels of an ``(H, W)`` ``mask`` nearer to a background click than to every foreground point.

    With no foreground point every pixel is nearer to the background: the result is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if len(background) == 0 or not mask.any():
        return mask
    if len(foreground) == 0:
        return np.zeros_like(mask)
    rr, cc = np.nonzero(mask)
    pixels = np.stack((rr, cc), axis=1).astype(np.float64)
    fg = np.asarray(foreground, dtype=np.float64).reshape(-1, 2)
    bg = np.asarray(background, dtype=np.float64).reshape(-1, 2)
    d_fg = np.min(np.linalg.norm(pixels[:, None] - fg[None], axis=2), axis=1)
    d_bg = np.min(np.linalg.norm(pixels[:, None] - bg[None], axis=2), axis=1)
    out = mask.copy()
    out[rr[d_bg < d_fg], cc[d_bg < d_fg]] = False
    return out


def _check_plane(plane: np.ndarray) -> np.ndarray:
    plane = np.asarray(plane, dtype=np.float64)
    if plane.ndim != 2:
        raise PromptError(f"clicks need a 2D slice, got an array of shape {plane.shape}.")
    if not np.isfinite(plane).all():
        raise PromptError("the slice under the clicks contains NaN or infinite intensities.")
    return plane


def _check_clicks(clicks: Sequence[Sequence[int]], shape: tuple[int, ...], what: str) -> list[tuple[int, int]]:
    out = []
    for click in clicks:
        if len(click) != 2:
            raise PromptError(f"a {what} click on a slice must be (row, col), got {tuple(click)}.")
        r, c = int(click[0]), int(click[1])
        if not (0 <= r < shape[0] and 0 <= c < shape[1]):
            raise PromptError(f"{what} click {(r, c)} lies outside the slice of shape {tuple(shape)}.")
        out.append((r, c))
    return out


def _flood_region(
    smooth: np.ndarray,
    seed: tuple[int, int],
    level: float,
    tolerance: float,
    inside: np.ndarray,
    max_pixels: float,
    shrink_steps: int,
    already: np.ndarray | None = None,
) -> np.ndarray:
    """The 8-connected pixels within ``tolerance`` of ``level`` around ``seed``, shrinking while over the size.

    Pixels in ``already`` (the current mask) do not count toward ``max_pixels``.
    """
    deviation = np.abs(smooth - level)
    deviation[~inside] = np.inf
    deviation[seed] = 0.0
    region = np.zeros(smooth.shape, dtype=bool)
    for _ in range(shrink_steps + 1):
        region = flood(deviation, seed, connectivity=2, tolerance=tolerance)
        region = ndimage.binary_fill_holes(region) & inside
        if (region.sum() if already is None else (region & ~already).sum()) <= max_pixels:
            return region
        tolerance *= 0.7
    return np.zeros_like(region)  # still leaking at the smallest tolerance: the caller falls back to a disc


def _level(smooth: np.ndarray, seed: tuple[int, int], window: int) -> tuple[float, float]:
    half = window // 2
    r, c = seed
    patch = smooth[max(r - half, 0) : r + half + 1, max(c - half, 0) : c + half + 1]
    return float(np.median(patch)), float(np.std(patch))


def grow_from_clicks(
    plane: np.ndarray,
    foreground: Sequence[tuple[int, int]],
    background: Sequence[tuple[int, int]] = (),
    limit: tuple[int, int, int, int] | None = None,
    settings: ClickGrowing | None = None,
) -> np.ndarray:
    """A mask on one slice grown from foreground clicks, cut by background clicks.

    For each foreground click: the slice is median-filtered (3x3, keeps edges), the object's level is the median
    of the filtered intensities in a ``window`` square around the click, and the noise level is estimated from the
    residual of the filter over the whole slice. The pixels within ``tolerance`` noise deviations of the level
    that are 8-connected to the click (``skimage.segmentation.flood``) form the region; holes are filled. If the
    region is larger than ``max_fraction`` of the slice (or than the ``limit`` box) it has leaked into the
    surroundings, and the tolerance shrinks until it does not. A region of fewer than ``min_pixels`` pixels becomes
    a small disc around the click. The regions of all foreground clicks are joined; then every pixel nearer to a
    background click than to any foreground click is removed, and only the parts connected to a foreground click
    are kept.

    Args:
        plane: ``(H, W)`` intensities of the slice.
        foreground: ``(row, col)`` clicks inside the object (at least one).
        background: ``(row, col)`` clicks outside it.
        limit: an inclusive ``(r0, c0, r1, c1)`` box the mask must stay in.
        settings: the region-growing parameters.

    Returns:
        an ``(H, W)`` boolean mask, not empty.

    Raises:
        PromptError: no foreground click, a click outside the slice or none inside ``limit``, non-finite
            intensities, or background clicks that remove the whole object.
    """
    settings = settings or ClickGrowing()
    if not foreground:
        raise PromptError("clicks need at least one foreground click inside the object.")
    plane = _check_plane(plane)
    foreground = _check_clicks(foreground, plane.shape, "foreground")
    background = _check_clicks(background, plane.shape, "background")
    smooth = ndimage.median_filter(plane, size=3, mode="nearest")
    sigma = noise_sigma(plane, smooth)
    inside = np.ones(plane.shape, dtype=bool)
    if limit is not None:
        r0, c0, r1, c1 = limit
        inside[:] = False
        inside[r0 : r1 + 1, c0 : c1 + 1] = True
    max_pixels = float(inside.sum()) if limit is not None else settings.max_fraction * plane.size
    seeds = [(r, c) for r, c in foreground if inside[r, c]]
    if not seeds:
        raise PromptError("no foreground click lies inside the box (roi).")
    mask = np.zeros(plane.shape, dtype=bool)
    for seed in seeds:
        level, local = _level(smooth, seed, settings.window)
        region = _flood_region(
            smooth, seed, level, settings.tolerance * max(sigma, local), inside, max_pixels, settings.shrink_steps
        )
        if region.sum() < settings.min_pixels:
            region = disc(plane.shape, seed, settings.fallback_radius) & inside
        mask |= region
    mask = keep_touching(cut_with_background(mask, seeds, background), seeds)
    if not mask.any():
        raise PromptError("the background clicks removed the whole object around the foreground clicks.")
    return mask


def _remove_with_negative(
    mask: np.ndarray, positive: list[tuple[int, int]], click: tuple[int, int], largest: int
) -> np.ndarray:
    """Rule 2 of :func:`correct_plane` for one negative click inside ``mask``."""
    components, _ = ndimage.label(mask, structure=_EIGHT)
    hit = components == components[click]
    evidence = [p for p in positive if hit[p]]
    out = mask.copy()
    if not evidence:
        depth = ndimage.distance_transform_edt(hit)
        if int(hit.sum()) < largest or depth[click] >= 0.5 * float(depth.max()):
            out[hit] = False
            return out
        evidence = [tuple(int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))]
    kept = keep_touching(cut_with_background(hit, evidence, [click]), evidence)
    out[hit & ~kept] = False
    return out


def correct_plane(
    mask: np.ndarray,
    plane: np.ndarray,
    positive: Sequence[tuple[int, int]],
    negative: Sequence[tuple[int, int]],
    settings: ClickGrowing | None = None,
) -> np.ndarray:
    """Edit a slice's current mask with foreground (positive) and background (negative) clicks.

    The rule is in this module's docstring: a positive click outside the mask adds the region flood-filled from
    it (tolerance from the mask's intensity spread, size bounded by the mask's area); a negative click inside the
    mask removes the part of the component it hits that is nearer to it than to the positive evidence, or the
    whole component when nothing speaks for it.

    Args:
        mask: ``(H, W)`` the slice's current mask (any nonzero value is foreground; may be empty).
        plane: ``(H, W)`` intensities of the slice.
        positive: ``(row, col)`` foreground clicks.
        negative: ``(row, col)`` background clicks.
        settings: the region-growing parameters.

    Returns:
        the corrected ``(H, W)`` boolean mask (possibly empty).

    Raises:
        PromptError: no click at all, mask and slice of different shapes, a click outside the slice, or
            non-finite intensities.
    """
    settings = settings or ClickGrowing()
    plane = _check_plane(plane)
    mask = np.asarray(mask) != 0
    if mask.shape != plane.shape:
        raise PromptError(f"the mask's shape {mask.shape} differs from the slice's {plane.shape}.")
    positive = _check_clicks(positive, plane.shape, "foreground")
    negative = _check_clicks(negative, plane.shape, "background")
    if not positive and not negative:
        raise PromptError("a correction needs at least one foreground or background click.")
    out = mask.copy()
    outside = [p for p in positive if not mask[p]]
    if outside:
        smooth = ndimage.median_filter(plane, size=3, mode="nearest")
        sigma = noise_sigma(plane, smooth)
        area = int(mask.sum())
        if area >= settings.min_pixels:
            values = smooth[mask]
            spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
            max_pixels = max(settings.max_growth * area, float(settings.min_pixels))
        else:
            spread = 0.0
            max_pixels = settings.max_fraction * plane.size
        inside = np.ones(plane.shape, dtype=bool)
        for seed in outside:
            if out[seed]:  # an earlier click's region already covers it
                continue
            level, local = _level(smooth, seed, settings.window)
            # Tolerance from the mask's own spread; with no mask to learn from, from the click's surroundings.
            tolerance = settings.tolerance * (max(spread, sigma) if area >= settings.min_pixels else max(sigma, local))
            region = _flood_region(smooth, seed, level, tolerance, inside, max_pixels, settings.shrink_steps, out)
            if region.sum() < settings.min_pixels:
                region = disc(plane.shape, seed, settings.fallback_radius)
            region = keep_touching(cut_with_background(region, positive, negative), [seed])
            out |= region
    if negative:
        components, _ = ndimage.label(out, structure=_EIGHT)
        sizes = np.bincount(components.ravel())[1:]
        largest = int(sizes.max()) if sizes.size else 0
        for click in negative:
            if out[click]:
                out = _remove_with_negative(out, positive, click, largest)
    return out
