"""Correcting a result: new guide slices of one object, and only the slices they can change recomputed.

An object's result comes from its guides (the prompt slices, each keeping its mask). A correction adds or
replaces guides. For each corrected slice, the slices between its neighbouring guides (to the volume's end on a
side without one) are recomputed by propagating from the guides of that stretch: the inferer runs on that block of
slices only, so the guides at its ends propagate inward and, beyond an outermost guide, propagation runs as for a
new prompt. Everything else of the previous result is kept voxel for voxel, other objects included. A corrected
slice whose mask is empty (every voxel removed by background clicks) ends the object there.

**Early stop.** A correction rarely changes the whole stretch up to its neighbouring guide or the volume's end: away
from the corrected slice the recomputed masks soon match the previous ones again. So the stretch is first recomputed
in a window of ``FIRST_REACH`` slices on each side of the corrected slices (fewer when the inferer's round predicts
fewer, never fewer than ``agree_slices + 1``), clipped to the stretch. On each side where the window cuts the
stretch short, the recomputed slices are compared with the previous result's, walking outward from the corrected
slice: once ``agree_slices`` consecutive slices agree (per-slice Dice >= ``agree_dice``; two empty masks agree), the
front stops at the last of them and from there on the previous result is kept. A side without such a run is
recomputed again in a window four times as wide and, if it still does not agree, to its guide or the volume's end,
as without early stop (a settled side keeps its stop). Stretches holding no drawn (non-empty) corrected slice are
always recomputed whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from pam_monai.errors import PromptError
from pam_monai.inferers.propagation_parts import neighbourhood_size
from pam_monai.inferers.propagator import Propagator
from pam_monai.prompts.core import MaskPrompt

__all__ = [
    "AGREE_DICE",
    "AGREE_SLICES",
    "FIRST_REACH",
    "affected_range",
    "agreeing_stop",
    "implied_guides",
    "refine_object",
]

AGREE_DICE = 0.95
"""Per-slice Dice with the previous result from which a recomputed slice counts as agreeing (early stop)."""
AGREE_SLICES = 3
"""Consecutive agreeing slices after which a correction's recomputed front stops (early stop)."""
FIRST_REACH = 6
"""Slices on each side of the corrected slices that early stop recomputes first (then 4x as many, then all)."""


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


def agreeing_stop(
    new: torch.Tensor, old: torch.Tensor, start: int, step: int, agree_dice: float, agree_slices: int
) -> int | None:
    """Where a recomputed front may stop: walking from ``start`` by ``step`` (+1 / -1) over the ``(D, H, W)``
    masks ``new`` and ``old`` (the recomputed and the previous slices), the index of the last slice of the first
    ``agree_slices`` consecutive slices whose Dice is ``>= agree_dice`` (two empty masks agree); ``None`` if none."""
    run = 0
    stop = len(new) if step > 0 else -1
    for k in range(start, stop, step):
        a, b = new[k], old[k]
        total = int(a.sum()) + int(b.sum())
        dice = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
        run = run + 1 if dice >= agree_dice else 0
        if run >= agree_slices:
            return k
    return None


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
    inferer: Propagator,
    vol: torch.Tensor,
    network: Callable[..., Any],
    guides: dict[int, torch.Tensor],
    first: int,
    last: int,
    spacing: tuple[float, float, float],
    axis: int,
) -> tuple[torch.Tensor, int]:
    """``(last - first + 1, H, W)`` masks of slices ``first..last`` of ``vol`` (axis first) propagated from the
    non-empty ``guides`` inside the block (empty when there are none), and the predictions made.

    The nearest guide on each side outside the block goes with it as an outer guide: the shape prior between
    guides (``interpolation_weight``) then treats the block's slices as a whole recomputation would."""
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
    below, above = [k for k in guides if k < first], [k for k in guides if k > last]
    outer = [
        MaskPrompt(k - first, guides[k]) for k in (max(below, default=None), min(above, default=None)) if k is not None
    ]
    result = inferer.propagate(
        crop, network, mask_prompt=prompt.movedim(0, axis), axis=axis, spacing=spacing, outer_guides=outer
    )
    return result.labels.movedim(axis, 0) > 0, result.slices_predicted


def _recompute_stretch(
    inferer: Propagator,
    vol: torch.Tensor,
    network: Callable[..., Any],
    guides: dict[int, torch.Tensor],
    old: torch.Tensor,
    anchors: list[int],
    start: int,
    end: int,
    spacing: tuple[float, float, float],
    axis: int,
    agree: tuple[float, int] | None,
) -> tuple[torch.Tensor, int, int, int]:
    """Slices ``start..end`` recomputed around the corrected slices ``anchors``, with the early stop of the module
    docstring (``agree``: ``(agree_dice, agree_slices)``, ``None``: the whole stretch).

    Returns:
        the ``(end - start + 1, H, W)`` masks, the first and last slice to write (the stretch's own indices) and the
        number of predictions made.
    """
    if agree is None or not anchors:
        block, count = _propagate_block(inferer, vol, network, guides, start, end, spacing, axis)
        return block, start, end, count
    z = neighbourhood_size(inferer.thickness_mm, float(spacing[axis]), inferer.max_neighbours)
    first_reach = max(min(z, FIRST_REACH), agree[1] + 1)
    bounds = [max(start, min(anchors) - first_reach), min(end, max(anchors) + first_reach)]
    predicted, settled = 0, [False, False]
    for reach in (first_reach, 4 * first_reach, None):
        if reach is None:  # the last try: the unsettled sides run on to their guide or the volume's end
            bounds = [bounds[0] if settled[0] else start, bounds[1] if settled[1] else end]
        else:  # a settled side keeps its stop, an unsettled one grows to ``reach``
            bounds = [b if done else (max(start, min(anchors) - reach), min(end, max(anchors) + reach))[side]
                      for side, (b, done) in enumerate(zip(bounds, settled))]  # fmt: skip
        first, last = bounds
        block, count = _propagate_block(inferer, vol, network, guides, first, last, spacing, axis)
        predicted += count
        for side, (cut_short, anchor, step) in enumerate(
            ((first > start, min(anchors) - first, -1), (last < end, max(anchors) - first, 1))
        ):
            if not cut_short:
                settled[side] = True
            elif not settled[side]:
                stop = agreeing_stop(block, old[first - start : last + 1 - start], anchor + step, step, *agree)
                if stop is not None:
                    bounds[side], settled[side] = first + stop, True
        if all(settled):
            break
    out = torch.zeros((end - start + 1, *vol.shape[1:]), dtype=torch.bool)
    out[first - start : last + 1 - start] = block
    return out, bounds[0], bounds[1], predicted


def refine_object(
    inferer: Propagator,
    image: torch.Tensor,
    network: Callable[..., Any],
    previous: torch.Tensor,
    label: int,
    guides: Mapping[int, torch.Tensor],
    corrections: Mapping[int, torch.Tensor],
    *,
    axis: int,
    spacing: tuple[float, float, float],
    agree_dice: float | None = AGREE_DICE,
    agree_slices: int = AGREE_SLICES,
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
        agree_dice: early stop (module docstring): the per-slice Dice with the previous result from which a
            recomputed slice agrees; ``None``: recompute every affected slice.
        agree_slices: early stop: consecutive agreeing slices after which a recomputed front stops.

    Returns:
        the new label volume (in ``previous``'s memory layout), the object's new guides, the rewritten slice ranges
        (inclusive; slices in them that early stop kept are rewritten as they were) and the number of network
        predictions made.

    Raises:
        PromptError: no correction, a slice outside the image or a mask of the wrong shape.
    """
    vol = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    vol = vol.reshape(vol.shape[-3:]).to(torch.float32).movedim(axis, 0)
    depth, height, width = vol.shape
    if not corrections:
        raise PromptError("the correction is empty: draw a mask, a box or clicks on at least one slice.")
    if agree_slices < 1:
        raise PromptError(f"agree_slices must be at least 1, got {agree_slices}.")
    for k, m in corrections.items():
        if not 0 <= k < depth:
            raise PromptError(f"the correction's slice {k} is outside the image: axis {axis} has {depth} slices.")
        if tuple(m.shape) != (height, width):
            raise PromptError(f"the correction's mask {tuple(m.shape)} differs from the slice's {(height, width)}.")
    agree = None if agree_dice is None else (float(agree_dice), int(agree_slices))
    new_guides = {k: m.cpu().bool() for k, m in guides.items()} | {k: m.cpu().bool() for k, m in corrections.items()}
    out = previous.clone().movedim(axis, 0)
    ranges, written = _merged_ranges(new_guides, sorted(corrections), depth), []
    predicted = 0
    for lo, hi in ranges:
        # Empty guides end the object: blocks between them propagate separately and the empty slices stay empty.
        cuts = [k for k in sorted(new_guides) if lo <= k <= hi and not bool(new_guides[k].any())]
        found = torch.zeros((hi - lo + 1, height, width), dtype=torch.bool)
        write = torch.zeros(hi - lo + 1, dtype=torch.bool)
        write[[k - lo for k in cuts]] = True
        old = out[lo : hi + 1] == label
        start = lo
        for stop in [*cuts, hi + 1]:
            if stop - 1 >= start:
                anchors = [k for k in corrections if start <= k < stop and bool(corrections[k].any())]
                block, first, last, count = _recompute_stretch(
                    inferer, vol, network, new_guides, old[start - lo : stop - lo], anchors, start, stop - 1,
                    spacing, axis, agree,
                )  # fmt: skip
                found[start - lo : stop - lo] = block
                write[first - lo : last + 1 - lo] = True
                predicted += count
            start = stop + 1
        # A guide that was not corrected keeps its slice as it was: write only between it and the correction.
        if lo in guides and lo not in corrections:
            write[0] = False
        if hi in guides and hi not in corrections:
            write[-1] = False
        rewrite = torch.nonzero(write).flatten()
        if not len(rewrite):
            continue
        first, last = int(rewrite[0]), int(rewrite[-1])
        keep = ~write[first : last + 1, None, None]
        slab = out[lo + first : lo + last + 1]
        mask = torch.where(keep, old[first : last + 1], found[first : last + 1])
        slab[slab == label] = 0
        slab[mask & (slab == 0)] = label
        written.append((lo + first, lo + last))
    return out.movedim(0, axis), new_guides, written or [ranges[0]], predicted
