"""A shape prior for the slices between two drawn guides: their signed distance maps, interpolated.

Between two guide slices of one object the object's outline usually changes smoothly from one drawn outline to the
other. Interpolating the two guides' signed distance maps along the axis (negative inside, in pixels; each first
moved with the centroid, which goes in a straight line) and passing the result through a logistic gives a soft
"fill between slices"; fused with PropMask's (and the random
walker's) probability it keeps the result close to both drawn outlines where the network follows a wrong edge. It
is used only strictly between two guides drawn as masks (not Box2Mask's masks of boxes): one guide, or slices beyond
the outermost guides, get no prior, so a one-slice prompt is unchanged.

Chosen on the validation structures (the ICBM 2009c template's structures outside the atlas test set, three true
slices per object on each axis, 33 objects): weight 0.7 and softness 1 pixel raised the mean DSC from 0.698 to
0.739 with the default walker opinion (0.731 without moving the maps with the centroid); extrapolating the maps
beyond the outermost guides lowered it, and so did seeding the walker from the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pam_monai.errors import InferenceSettingError
from pam_monai.prompts.core import MaskPrompt

__all__ = [
    "check_interpolation",
    "fuse_interpolation",
    "guide_pairs",
    "interpolated_distance",
    "outline_prior",
    "signed_distance",
]


def check_interpolation(weight: float, softness: float) -> tuple[float, float]:
    """The validated ``(weight, softness)``: weight in [0, 1], softness positive (pixels)."""
    if not 0.0 <= float(weight) <= 1.0:
        raise InferenceSettingError(f"interpolation_weight must be in [0, 1], got {weight}.")
    if not float(softness) > 0:
        raise InferenceSettingError(f"interpolation_softness must be positive, got {softness}.")
    return float(weight), float(softness)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean signed distance (pixels) of a 2D boolean ``mask``: negative inside, positive outside.

    A mask without background pixels is inside everywhere (``-1`` times its largest side)."""
    from scipy import ndimage  # loaded when a prior is computed, not with the inferer

    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return np.full(mask.shape, -float(max(mask.shape)), dtype=np.float32)
    outside = ndimage.distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, np.inf)
    return (outside - ndimage.distance_transform_edt(mask)).astype(np.float32)


def outline_prior(mask: torch.Tensor, softness: float = 1.0) -> torch.Tensor:
    """``sigmoid(-d / softness)`` of a 2D mask's :func:`signed_distance` ``d``: a soft copy of its outline, on the
    mask's device (float32). A propagation round mixes it into the slices it predicts from that guide."""
    distance = torch.from_numpy(signed_distance(mask.cpu().numpy().astype(bool)))
    return torch.sigmoid(-distance.to(mask.device) / softness)


def interpolated_distance(
    mask0: np.ndarray, mask1: np.ndarray, t: float, *, maps: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """The signed distance map a fraction ``t`` (0..1) of the way from ``mask0`` to ``mask1`` (2D, non-empty).

    Each guide's map is first moved (bilinear, edges repeated) so that its centroid lies on the straight line
    between the two centroids, then the maps are mixed linearly: a shape that moves keeps its size on the way
    instead of vanishing where the two guides do not overlap. ``maps``: the two masks' :func:`signed_distance`
    maps when already computed (they do not depend on ``t``)."""
    from scipy import ndimage

    if maps is None:
        maps = (signed_distance(mask0), signed_distance(mask1))
    distances = []
    centroids = [np.argwhere(m).mean(axis=0) for m in (mask0, mask1)]
    target = (1.0 - t) * centroids[0] + t * centroids[1]
    for distance, centroid in zip(maps, centroids):
        if np.abs(target - centroid).max() > 1e-6:
            distance = ndimage.shift(distance, target - centroid, order=1, mode="nearest")
        distances.append(distance)
    return ((1.0 - t) * distances[0] + t * distances[1]).astype(np.float32)


def guide_pairs(seeds: Sequence[MaskPrompt]) -> list[tuple[int, torch.Tensor, int, torch.Tensor]]:
    """Consecutive drawn guides of one object with slices between them: ``(k0, mask0, k1, mask1)``, ``k0 < k1 - 1``.

    Masks on the same slice are united; a slice with a box seed (Box2Mask's mask) or an empty mask is no end of a
    pair (the pairs skip over it: the prior is only between two drawn outlines)."""
    drawn: dict[int, torch.Tensor] = {}
    boxed = {s.slice_index for s in seeds if s.box is not None}
    for s in seeds:
        if s.box is None:
            mask = s.mask.bool()
            drawn[s.slice_index] = drawn[s.slice_index] | mask if s.slice_index in drawn else mask
    ends = [k for k in sorted(drawn) if k not in boxed and bool(drawn[k].any())]
    pairs = []
    for k0, k1 in zip(ends, ends[1:]):
        between = [k for k in range(k0 + 1, k1) if k in drawn or k in boxed]
        if k1 - k0 > 1 and not between:
            pairs.append((k0, drawn[k0], k1, drawn[k1]))
    return pairs


def fuse_interpolation(
    mean: torch.Tensor,
    seeds: Sequence[MaskPrompt],
    origin: tuple[int, int, int],
    weight: float,
    softness: float = 1.0,
) -> None:
    """Mix the interpolated shape prior into one object's probability, in place, on the slices between its guides.

    ``mean[k] = (1 - weight) * mean[k] + weight * sigmoid(-d_k / softness)`` with ``d_k`` the signed distance maps of
    the two neighbouring drawn guides interpolated in ``k`` (:func:`interpolated_distance`).

    Args:
        mean: ``(d, h, w)`` object probability on a block of the volume (propagation axis first) that starts at
            ``origin`` (slice, row, column) and holds every drawn guide's mask in-plane.
        seeds: the object's guides (slice indices and ``(H, W)`` masks on the whole slice); a guide's slice may lie
            outside the block (the slices of the block between it and the next guide get the prior).
        origin: the block's first slice, row and column in the volume.
        weight: the prior's weight in [0, 1] (0: nothing changes).
        softness: the logistic's scale in pixels (how soft the prior's outline is).
    """
    if weight == 0.0:
        return
    d0, r0, c0 = origin
    depth, height, width = mean.shape
    full_h, full_w = seeds[0].mask.shape if seeds else (0, 0)
    # One pixel of background around the block: the distances inside it are then those on the whole slice.
    rows = slice(max(r0 - 1, 0), min(r0 + height + 1, full_h))
    cols = slice(max(c0 - 1, 0), min(c0 + width + 1, full_w))
    inner = (slice(r0 - rows.start, r0 - rows.start + height), slice(c0 - cols.start, c0 - cols.start + width))
    for k0, mask0, k1, mask1 in guide_pairs(seeds):
        inside = range(max(k0 + 1, d0), min(k1, d0 + depth))
        if not len(inside):
            continue
        masks = [m[rows, cols].cpu().numpy().astype(bool) for m in (mask0, mask1)]
        maps = (signed_distance(masks[0]), signed_distance(masks[1]))  # once per pair, not per slice
        for k in inside:
            prior = interpolated_distance(*masks, (k - k0) / (k1 - k0), maps=maps)[inner]
            prior = torch.sigmoid(-torch.from_numpy(prior).to(mean.device) / softness)
            mean[k - d0] = (1.0 - weight) * mean[k - d0] + weight * prior
