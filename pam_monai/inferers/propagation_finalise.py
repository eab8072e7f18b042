"""The end of a propagation: a random walker's second opinion, the votes averaged into labels, and only the
3D components that touch a guide kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pam_monai.inferers.interpolation import fuse_interpolation
from pam_monai.inferers.propagation_parts import Region, lazy_zeros
from pam_monai.inferers.random_walker import WalkerRegion, extent, prompt_planes, random_walker_probability
from pam_monai.prompts.core import MaskPrompt

__all__ = ["WalkerOpinion", "finalise_labels", "keep_connected_components", "walker_opinions"]


@dataclass
class WalkerOpinion:
    """A random walker's ``probability`` of one object on ``region`` of the volume, and its ``weight``."""

    weight: float
    probability: torch.Tensor
    region: WalkerRegion


def walker_opinions(
    vol: torch.Tensor,
    seeds: list[MaskPrompt],
    obj_of: dict[int, int],
    prob_sum: torch.Tensor,
    votes: torch.Tensor,
    *,
    weight_mask: float,
    weight_box: float,
    beta: float,
    max_voxels: int,
) -> dict[int, WalkerOpinion]:
    """Per object with a nonzero walker weight (``weight_box`` when a seed came from a box, else ``weight_mask``):
    the weight, the walker's probability and its region.

    Args:
        vol: ``(D, H, W)`` image, propagation axis first.
        seeds: the guides.
        obj_of: label value -> object index in ``prob_sum``.
        prob_sum: ``(N, D, H, W)`` weighted sum of PropMask's probabilities.
        votes: ``(N, D)`` sum of the vote weights per slice.
        beta: the walker's edge weight; max_voxels: larger regions are walked on a coarser grid.
    """
    opinions: dict[int, WalkerOpinion] = {}
    volume: np.ndarray | None = None
    for lab, o in obj_of.items():
        own = [s for s in seeds if s.label == lab]
        weight = weight_box if any(s.box is not None for s in own) else weight_mask
        if weight == 0.0:
            continue
        if volume is None:  # one host copy of the volume for all objects (it may live on a GPU)
            volume = vol.cpu().numpy()
        # The region covers PropMask's result, so that the walker judges all of it and its faces (background
        # seeds) do not cut a long object short.
        cover = extent(prob_sum[o] > 0.5 * votes[o][:, None, None], margin=3)
        probability, region = random_walker_probability(
            volume, prompt_planes(own), beta=beta, max_voxels=max_voxels, cover=cover
        )
        opinions[o] = WalkerOpinion(weight, torch.from_numpy(probability).to(prob_sum.device), region)
    return opinions


def finalise_labels(
    prob_sum: torch.Tensor,
    votes: torch.Tensor,
    seeds: list[MaskPrompt],
    obj_of: dict[int, int],
    labels: list[int],
    limits: dict[int, tuple[int, int, tuple[int, ...] | None]],
    axis: int,
    touched: Region | None = None,
    walker: dict[int, WalkerOpinion] | None = None,
    keep_connected: bool = True,
    interpolation: tuple[float, float] = (0.0, 1.0),
    outer_guides: list[MaskPrompt] | None = None,
) -> torch.Tensor:
    """Average the votes (and the walker's opinions), mix in the shape prior between drawn guides
    (``interpolation``: weight and softness, see :func:`~pam_monai.inferers.interpolation.fuse_interpolation`),
    threshold, keep (``keep_connected``) the components touching the prompts. ``outer_guides``: drawn guides
    beyond the volume (of which it is a block) that only the prior uses.

    ``(D, H, W)`` -> input axes. Only the block of slices with votes and of the ``touched`` rows / columns (and
    the walker's regions) can be nonzero: the work is done on that block and the rest of the output is 0 (the
    same result as on the whole volume).
    """
    depth, height, width = prob_sum.shape[1:]
    out = lazy_zeros((depth, height, width), torch.int16, prob_sum.device)
    voted = torch.nonzero(votes.amax(dim=0) > 0).flatten()
    if len(voted) == 0:
        return out.movedim(0, axis)
    d0, d1 = int(voted[0]), int(voted[-1]) + 1
    r0, r1, c0, c1 = touched.bounds(height, width) if touched is not None else (0, height, 0, width)
    walker = walker or {}
    for opinion in walker.values():
        ds, rs, cs = opinion.region
        d0, d1, r0, r1 = min(d0, ds.start), max(d1, ds.stop), min(r0, rs.start), max(r1, rs.stop)
        c0, c1 = min(c0, cs.start), max(c1, cs.stop)
    # Vote weights are counts (1 per prediction) or inverse distances: divide where a slice has votes.
    weights = votes[:, d0:d1]
    mean = prob_sum[:, d0:d1, r0:r1, c0:c1] / torch.where(weights > 0, weights, 1.0)[:, :, None, None]
    for o, opinion in walker.items():
        ds, rs, cs = opinion.region
        walked = torch.zeros_like(mean[o])
        walked[ds.start - d0 : ds.stop - d0, rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] = (
            opinion.probability
        )
        # The prompt slices keep their seed masks: a drawn mask is the user's word, and Box2Mask's already
        # answered the box.
        prompt_slices = sorted({s.slice_index - d0 for s in seeds if obj_of[s.label] == o})
        kept = mean[o, prompt_slices].clone()
        mean[o] = (1.0 - opinion.weight) * mean[o] + opinion.weight * walked
        mean[o, prompt_slices] = kept
    if interpolation[0] > 0:
        for lab, o in obj_of.items():
            own = [s for s in [*seeds, *(outer_guides or [])] if s.label == lab]
            fuse_interpolation(mean[o], own, (d0, r0, c0), *interpolation)
    for lab, (first, last, box) in limits.items():
        o = obj_of[lab]
        mean[o, : max(first - d0, 0)] = 0
        mean[o, max(last + 1 - d0, 0) :] = 0
        if box is not None:
            br0, bc0, br1, bc1 = box
            inside = torch.zeros_like(mean[o, 0], dtype=torch.bool)
            inside[max(br0 - r0, 0) : max(br1 + 1 - r0, 0), max(bc0 - c0, 0) : max(bc1 + 1 - c0, 0)] = True
            mean[o] *= inside
    if len(labels) == 1:
        best, which = mean[0], None
    else:
        best, which = mean.max(dim=0)
    label_values = torch.tensor(labels, dtype=torch.int16, device=mean.device)
    values = label_values[which] if which is not None else label_values[0]
    block = torch.where(best > 0.5, values, torch.zeros_like(best, dtype=torch.int16))
    if keep_connected:
        block = keep_connected_components(block, seeds, (d0, r0, c0))
    out[d0:d1, r0:r1, c0:c1] = block
    return out.movedim(0, axis)


def keep_connected_components(
    out: torch.Tensor, seeds: list[MaskPrompt], origin: tuple[int, int, int] = (0, 0, 0)
) -> torch.Tensor:
    """Per label, drop 3D components that do not touch that label's prompt masks.

    ``out`` may be a block of the volume starting at ``origin`` (slice, row, column) that holds every nonzero
    voxel: components are the same as in the whole volume.
    """
    from scipy import ndimage  # after the propagation, not with the inferer

    array = out.cpu().numpy()
    cleaned = np.zeros_like(array)
    d0, r0, c0 = origin
    rows, cols = slice(r0, r0 + array.shape[1]), slice(c0, c0 + array.shape[2])
    for lab in sorted({s.label for s in seeds}):
        components, count = ndimage.label(array == lab)
        if count == 0:
            continue
        touching = set()
        for s in (s for s in seeds if s.label == lab):
            k = s.slice_index - d0
            if not 0 <= k < len(array):
                continue
            touching.update(np.unique(components[k][s.mask[rows, cols].cpu().numpy()]).tolist())
        touching.discard(0)
        cleaned[np.isin(components, sorted(touching))] = lab
    return torch.from_numpy(cleaned).to(out.device)
