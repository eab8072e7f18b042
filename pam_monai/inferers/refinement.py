"""Correcting a result: new guide slices of one object, and only the slices they can change recomputed.

An object's result comes from its guides (the prompt slices, each keeping its mask). A correction adds or
replaces guides. For each corrected slice, the slices between its neighbouring guides (to the volume's end on a
side without one) are recomputed by propagating from the guides of that stretch: the inferer runs on that block of
slices only, so the guides at its ends propagate inward and, beyond an outermost guide, propagation runs as for a
new prompt. Everything else of the previous result is kept voxel for voxel, other objects included. A corrected
slice whose mask is empty (every voxel removed by background clicks) ends the object there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from pam_monai.errors import PromptError
from pam_monai.inferers.propagation import PropagationInferer

__all__ = ["affected_range", "implied_guides", "refine_object"]


def implied_guides(labels: torch.Tensor, label: int, axis: int) -> dict[int, torch.Tensor]:
    """The guide a result without a record of its guides implies for ``label``: its largest slice along ``axis``
    (where a user prompts first). Returns ``{}`` when the label is absent."""
    moved = labels.movedim(axis, 0) == label
    areas = moved.flatten(1).sum(1)
    if not bool(areas.any()):
        return {}
    index = int(torch.argmax(areas))
    return {index: moved[index].clone()}


def affected_range(guides: Mapping[int, Any], corrected: int, depth: int) -> tuple[int, int]:
    """The slices a new guide at ``corrected`` may change: up to the neighbouring guides (inclusive), or to the
    volume's ends where it has none."""
    below = [g for g in guides if g < corrected]
    above = [g for g in guides if g > corrected]
    return (max(below) if below else 0), (min(above) if above else depth - 1)


def _merged_ranges(guides: Mapping[int, Any], corrected: list[int], depth: int) -> list[tuple[int, int]]:
    others = {g: None for g in guides if g not in corrected}
    ranges = []
    for c in sorted(corrected):
        lo, hi = affected_range({**others, **{k: None for k in corrected if k != c}}, c, depth)
        if ranges and lo <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))
        else:
            ranges.append((lo, hi))
    return ranges


def _propagate_block(
    inferer: PropagationInferer,
    vol: torch.Tensor,
    network: Callable[..., Any],
    guides: dict[int, torch.Tensor],
    first: int,
    last: int,
    spacing: tuple[float, float, float],
    axis: int,
) -> tuple[torch.Tensor, int]:
    """``(last - first + 1, H, W)`` masks of slices ``first..last`` of ``vol`` (axis first) propagated from the
    non-empty ``guides`` inside the block (empty when there are none), and the predictions made."""
    block = torch.zeros((last - first + 1, *vol.shape[1:]), dtype=torch.bool)
    inside = {k: m for k, m in guides.items() if first <= k <= last and bool(m.any())}
    for k, m in inside.items():
        block[k - first] = m
    if not inside or len(inside) == len(block):
        return block, 0
    if len(block) < 2:
        return block, 0
    prompt = torch.zeros(block.shape, dtype=torch.int16)
    for k, m in inside.items():
        prompt[k - first] = m.to(torch.int16)
    # The block in the image's axis order, so spacing and axis mean what they mean for the whole image.
    crop = vol[first : last + 1].movedim(0, axis)
    result = inferer.propagate(crop, network, mask_prompt=prompt.movedim(0, axis), axis=axis, spacing=spacing)
    return result.labels.movedim(axis, 0) > 0, result.slices_predicted


def refine_object(
    inferer: PropagationInferer,
    image: torch.Tensor,
    network: Callable[..., Any],
    previous: torch.Tensor,
    label: int,
    guides: Mapping[int, torch.Tensor],
    corrections: Mapping[int, torch.Tensor],
    *,
    axis: int,
    spacing: tuple[float, float, float],
) -> tuple[torch.Tensor, dict[int, torch.Tensor], list[tuple[int, int]], int]:
    """One object's result after ``corrections`` (new guide masks by slice), recomputing only what they change.

    Args:
        inferer: runs the propagation on each recomputed block of slices.
        image: ``(X, Y, Z)`` intensities.
        network: PropMask.
        previous: ``(X, Y, Z)`` label volume to correct (other labels are kept as they are).
        label: the object's label value.
        guides: the object's current guides, slice -> ``(H, W)`` bool mask (slices normal to ``axis``).
        corrections: the new or replaced guides, slice -> ``(H, W)`` bool mask (may be empty: no object there).
        axis: the propagation axis.
        spacing: the image's voxel spacing (mm).

    Returns:
        the new label volume, the object's new guides, the recomputed slice ranges (inclusive) and the number of
        network predictions made.

    Raises:
        PromptError: no correction, a slice outside the image or a mask of the wrong shape.
    """
    vol = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    vol = vol.reshape(vol.shape[-3:]).to(torch.float32).movedim(axis, 0)
    depth, height, width = vol.shape
    if not corrections:
        raise PromptError("the correction is empty: draw a mask, a box or clicks on at least one slice.")
    for k, m in corrections.items():
        if not 0 <= k < depth:
            raise PromptError(f"the correction's slice {k} is outside the image: axis {axis} has {depth} slices.")
        if tuple(m.shape) != (height, width):
            raise PromptError(f"the correction's mask {tuple(m.shape)} differs from the slice's {(height, width)}.")
    new_guides = {k: m.cpu().bool() for k, m in guides.items()} | {k: m.cpu().bool() for k, m in corrections.items()}
    out = previous.clone().movedim(axis, 0)
    ranges = _merged_ranges(new_guides, sorted(corrections), depth)
    predicted = 0
    for lo, hi in ranges:
        # Empty guides end the object: blocks between them propagate separately and the empty slices stay empty.
        cuts = [k for k in sorted(new_guides) if lo <= k <= hi and not bool(new_guides[k].any())]
        found = torch.zeros((hi - lo + 1, height, width), dtype=torch.bool)
        start = lo
        for stop in [*cuts, hi + 1]:
            if stop - 1 >= start:
                block, count = _propagate_block(inferer, vol, network, new_guides, start, stop - 1, spacing, axis)
                found[start - lo : stop - lo] = block
                predicted += count
            start = stop + 1
        # A guide that was not corrected keeps its slice as it was: write only between it and the correction.
        first = lo + 1 if lo in guides and lo not in corrections else lo
        last = hi - 1 if hi in guides and hi not in corrections else hi
        slab = out[first : last + 1]
        slab[slab == label] = 0
        slab[found[first - lo : last + 1 - lo] & (slab == 0)] = label
    return out.movedim(0, axis).contiguous(), new_guides, ranges, predicted
