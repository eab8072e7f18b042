"""A weight-free baseline: a 3D random walker seeded from the prompt slice."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker

__all__ = ["random_walker_baseline"]


def random_walker_baseline(
    image: np.ndarray, prompt_mask: np.ndarray, axis: int, slice_index: int, beta: float = 130.0, margin: float = 1.0
) -> np.ndarray:
    """Segment from a 2D mask prompt with a random walker on a region around it.

    Seeds: object inside the eroded prompt; background in a ring around it on the prompt slice and on the faces of
    the region (the prompt's bounding box grown by ``margin`` times its size in-plane, and by its longer in-plane
    side along ``axis``).

    Args:
        image: ``(X, Y, Z)`` intensities.
        prompt_mask: ``(H, W)`` boolean mask on slice ``slice_index`` normal to ``axis``.
        axis: the prompt slice's normal.
        slice_index: the prompt slice.
        beta: random walker edge weight (on intensities scaled to [0, 1] in the region).
        margin: region growth relative to the prompt's size.

    Returns:
        ``(X, Y, Z)`` boolean mask.
    """
    moved = np.moveaxis(image, axis, 0).astype(np.float32)
    rows, cols = np.nonzero(prompt_mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(r1 - r0, c1 - c0)
    grow = int(np.ceil(margin * side / 2)) + 2
    region = (
        slice(max(slice_index - side, 0), min(slice_index + side + 1, moved.shape[0])),
        slice(max(r0 - grow, 0), min(r1 + grow, moved.shape[1])),
        slice(max(c0 - grow, 0), min(c1 + grow, moved.shape[2])),
    )
    data = moved[region]
    lo, hi = np.percentile(data, (0.5, 99.5))
    data = np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1)
    seeds = np.zeros(data.shape, dtype=np.int32)
    for face in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[face] = end
            seeds[tuple(index)] = 2
    local = np.zeros(data.shape[1:], dtype=bool)
    local[rows - region[1].start, cols - region[2].start] = True
    k = slice_index - region[0].start
    inner = ndimage.binary_erosion(local, iterations=2)
    if not inner.any():
        inner = local
    ring = ndimage.binary_dilation(local, iterations=4) & ~ndimage.binary_dilation(local, iterations=2)
    seeds[k][ring] = 2
    seeds[k][inner] = 1
    labels = random_walker(data, seeds, beta=beta, mode="cg_j", tol=1e-3)
    out = np.zeros(moved.shape, dtype=bool)
    out[region] = labels == 1
    return np.moveaxis(out, 0, axis)
