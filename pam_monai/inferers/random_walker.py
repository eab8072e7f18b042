"""A 3D random walker seeded from prompt slices: the weight-free baseline, and PAM's optional second opinion.

The walker sees nothing but the image's edges, so it fails differently from PropMask: where PropMask leaks along a
boundary the image does not show, or runs past an object's end, the walker often stops, and the other way round.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pam_monai.prompts.core import MaskPrompt

__all__ = ["PromptPlane", "WalkerRegion", "extent", "prompt_planes", "random_walker_probability"]

OBJECT, BACKGROUND = 1, 2

WalkerRegion = tuple[slice, slice, slice]
PromptPlane = (
    tuple[int, np.ndarray | torch.Tensor] | tuple[int, np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]
)


def _region(shape: tuple[int, ...], planes: Sequence[tuple[int, np.ndarray]], margin: float) -> WalkerRegion:
    """The prompts' bounding box, grown by ``margin`` times its size in-plane and by its longer side across."""
    indices = [k for k, _ in planes]
    rows = np.concatenate([np.nonzero(p.any(axis=1))[0] for _, p in planes])
    cols = np.concatenate([np.nonzero(p.any(axis=0))[0] for _, p in planes])
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = max(r1 - r0, c1 - c0)
    grow = math.ceil(margin * side / 2) + 2
    return (
        slice(max(min(indices) - side, 0), min(max(indices) + side + 1, shape[0])),
        slice(max(r0 - grow, 0), min(r1 + grow, shape[1])),
        slice(max(c0 - grow, 0), min(c1 + grow, shape[2])),
    )


def _plane_seeds(plane: np.ndarray, bound: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Object seeds inside the eroded prompt; background seeds in a ring two to four pixels outside it, or outside
    ``bound`` (a box the object lies in) when there is one."""
    from scipy import ndimage  # loaded when a walker runs, not with the inferer

    inner = ndimage.binary_erosion(plane, iterations=2)
    if not inner.any():
        inner = plane
    outer = plane if bound is None else bound | plane
    ring = ndimage.binary_dilation(outer, iterations=4) & ~ndimage.binary_dilation(outer, iterations=2)
    return inner, ring


def _as_array(plane: np.ndarray | torch.Tensor | None) -> np.ndarray | None:
    if plane is None:
        return None
    return (plane.cpu().numpy() if isinstance(plane, torch.Tensor) else np.asarray(plane)).astype(bool)


def random_walker_probability(
    volume: np.ndarray | torch.Tensor,
    planes: Sequence[PromptPlane],
    *,
    beta: float = 130.0,
    margin: float = 1.0,
    max_voxels: int | None = None,
    cover: WalkerRegion | None = None,
) -> tuple[np.ndarray, WalkerRegion]:
    """Object probability of a random walker on a region around the prompt slices.

    Seeds: object inside each eroded prompt, background in a ring around it on its slice and on the faces of the
    region (the prompts' bounding box grown by ``margin`` times its size in-plane and by its longer in-plane side
    along the slices' normal). Intensities are scaled to [0, 1] by the region's 0.5 / 99.5 percentiles.

    Args:
        volume: ``(D, H, W)`` intensities, slices along the first axis.
        planes: ``(slice_index, (H, W) boolean prompt)`` or ``(slice_index, prompt, bound)``, at least one with a
            nonzero prompt; ``bound`` (``(H, W)`` boolean or ``None``), for example the box a prompt was drawn from,
            moves the prompt's background ring outside it.
        beta: random walker edge weight.
        margin: region growth relative to the prompts' size.
        max_voxels: larger regions are walked on a grid coarsened by a whole factor (block means), and the
            probability is interpolated back; ``None`` walks at full resolution.
        cover: a block the region must also contain (for example another segmentation's extent), so that the
            region's faces, which are background seeds, do not cut through it.

    Returns:
        the ``(d, h, w)`` object probability on the region, and the region (slices into ``volume``).
    """
    array = volume.cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if array.ndim != 3:
        raise ValueError(f"the random walker needs a (D, H, W) volume, got shape {array.shape}.")
    prompts = []
    for entry in planes:
        plane, bound = _as_array(entry[1]), _as_array(entry[2]) if len(entry) > 2 else None  # type: ignore[misc]
        if plane is not None and plane.any():
            prompts.append((int(entry[0]), plane, bound))
    if not prompts:
        raise ValueError("the random walker needs at least one nonzero prompt slice.")
    region = _region(array.shape, [(k, p if b is None else p | b) for k, p, b in prompts], margin)
    if cover is not None:
        region = tuple(  # type: ignore[assignment]
            slice(max(min(a.start, b.start), 0), min(max(a.stop, b.stop), n))
            for a, b, n in zip(region, cover, array.shape)
        )
    data = array[region].astype(np.float32)
    lo, hi = np.percentile(data, (0.5, 99.5))
    data = np.clip((data - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)

    seeds = np.zeros(data.shape, dtype=np.int32)
    for face in range(3):
        index: list[slice | int] = [slice(None)] * 3
        for end in (0, -1):
            index[face] = end
            seeds[tuple(index)] = BACKGROUND
    in_plane = (region[1], region[2])
    cut = [(k, _plane_seeds(p[in_plane], None if b is None else b[in_plane])) for k, p, b in prompts]
    for k, (_, ring) in cut:
        seeds[k - region[0].start][ring] = BACKGROUND
    for k, (inner, _) in cut:  # object seeds last: they win where a ring crosses another prompt
        seeds[k - region[0].start][inner] = OBJECT

    from skimage.segmentation import random_walker  # scikit-image (and scipy.sparse) load when a walker runs

    factor = 1 if max_voxels is None else max(1, math.ceil((data.size / max_voxels) ** (1 / 3)))
    if factor > 1:
        data, seeds = _coarsen(data, seeds, factor)
    with warnings.catch_warnings():
        # The conjugate-gradient tolerance lets probabilities stray a little outside [0, 1]; they are clipped below.
        warnings.filterwarnings("ignore", message="The probability range is outside")
        probability = random_walker(data, seeds, beta=beta, mode="cg_j", tol=1e-3, return_full_prob=True)[OBJECT - 1]
    if factor > 1:
        full = tuple(s.stop - s.start for s in region)
        probability = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(probability, dtype=np.float32))[None, None],
            size=full,
            mode="trilinear",
            align_corners=False,
        )[0, 0].numpy()
    return np.clip(probability, 0.0, 1.0).astype(np.float32), region


def _coarsen(data: np.ndarray, seeds: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Block means of the intensities; a coarse voxel is an object (background) seed if any of its voxels is one.

    Object seeds win over background ones in the same block, as on the full grid.
    """
    pad = [(0, (-n) % factor) for n in data.shape]
    data = np.pad(data, pad, mode="edge")
    seeds = np.pad(seeds, pad, mode="constant")
    blocks = tuple(n // factor for n in data.shape)
    shape = (blocks[0], factor, blocks[1], factor, blocks[2], factor)
    coarse = data.reshape(shape).mean(axis=(1, 3, 5))
    grouped = seeds.reshape(shape)
    coarse_seeds = np.zeros(blocks, dtype=np.int32)
    coarse_seeds[(grouped == BACKGROUND).any(axis=(1, 3, 5))] = BACKGROUND
    coarse_seeds[(grouped == OBJECT).any(axis=(1, 3, 5))] = OBJECT
    return coarse, coarse_seeds


def prompt_planes(seeds: Sequence[MaskPrompt]) -> list[PromptPlane]:
    """The walker's prompts: each seed's mask, bounded by the box it came from (filled) where there is one.

    A box only says that the object lies inside it, so for box prompts the object seeds come from the mask Box2Mask
    drew and the background ring lies outside the box: a loose box around a thin object seeds no background as
    object.
    """
    planes: list[PromptPlane] = []
    for seed in seeds:
        bound = None
        if seed.box is not None:
            r0, c0, r1, c1 = seed.box
            bound = torch.zeros_like(seed.mask, dtype=torch.bool)
            bound[r0 : r1 + 1, c0 : c1 + 1] = True
        planes.append((seed.slice_index, seed.mask, bound))
    return planes


def extent(mask: torch.Tensor, margin: int) -> WalkerRegion | None:
    """Bounding block of a ``(D, H, W)`` boolean mask grown by ``margin`` voxels (``None`` if it is empty)."""
    if not bool(mask.any()):
        return None
    block = []
    for dim in range(3):
        present = torch.nonzero(mask.any(dim=tuple(d for d in range(3) if d != dim))).flatten()
        block.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, mask.shape[dim])))
    return block[0], block[1], block[2]
