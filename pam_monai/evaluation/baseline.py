"""A weight-free baseline: a 3D random walker seeded from the prompt slice."""

from __future__ import annotations

import numpy as np

from pam_monai.inferers.random_walker import random_walker_probability

__all__ = ["random_walker_baseline"]


def random_walker_baseline(
    image: np.ndarray, prompt_mask: np.ndarray, axis: int, slice_index: int, beta: float = 130.0, margin: float = 1.0
) -> np.ndarray:
    """Segment from a 2D mask prompt with a random walker on a region around it.

    Seeds: object inside the eroded prompt; background in a ring around it on the prompt slice and on the faces of
    the region (the prompt's bounding box grown by ``margin`` times its size in-plane, and by its longer in-plane
    side along ``axis``). Walked at full resolution.

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
    moved = np.moveaxis(np.asarray(image), axis, 0)
    probability, region = random_walker_probability(moved, [(slice_index, prompt_mask)], beta=beta, margin=margin)
    out = np.zeros(moved.shape, dtype=bool)
    out[region] = probability > 0.5
    return np.moveaxis(out, 0, axis)
