"""Where propagation starts: the masks on slices a prompt gives (its guides), and the slices each object may reach.

A mask prompt may mark any number of slices per label, 2D boxes may lie on several slices (Box2Mask turns each into
a mask), and masks and boxes may be mixed; a 3D box seeds a few slices of its inner half and bounds the object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from pam_monai.data.io import ImageError, is_meta_tensor
from pam_monai.prompts.core import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    PromptError,
    blank_value,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    require_contrast,
    validate_box,
)

__all__ = ["Limits", "front_limits", "prompt_seeds"]

Limits = dict[int, tuple[int, int, tuple[int, ...] | None]]
"""Per label: the first and last slice it may reach and, for a 3D box, the in-plane box it stays within."""


def _label_volume(mask_prompt: torch.Tensor | np.ndarray) -> torch.Tensor:
    if is_meta_tensor(mask_prompt):
        return mask_prompt.as_tensor()
    return torch.as_tensor(np.asarray(mask_prompt) if not isinstance(mask_prompt, torch.Tensor) else mask_prompt)


def _mask_seeds(vol: torch.Tensor, shape: tuple[int, ...], axis: int, mask_prompt: torch.Tensor | np.ndarray):
    prompt = _label_volume(mask_prompt)
    spatial = tuple(prompt.shape[-3:]) if prompt.ndim >= 3 else tuple(prompt.shape)
    if spatial != tuple(shape):
        raise PromptError(f"the mask prompt's grid {spatial} differs from the image's {tuple(shape)}.")
    seeds = mask_prompts_from_volume(prompt, axis)
    for s in seeds:
        s.mask = s.mask.to(vol.device)
        if not bool(torch.isfinite(vol[s.slice_index][s.mask]).all()):
            raise ImageError("the image has non-finite values under the prompt.")
        rows, cols = torch.nonzero(s.mask.any(1))[:, 0], torch.nonzero(s.mask.any(0))[:, 0]
        bounds = (int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max()))
        require_contrast(vol[s.slice_index], bounds, s.slice_index)
    return seeds


def prompt_seeds(
    vol: torch.Tensor,
    shape: tuple[int, ...],
    axis: int,
    *,
    mask_prompt: torch.Tensor | np.ndarray | None = None,
    box: Sequence[int] | None = None,
    slice_index: int | None = None,
    boxes: Sequence[tuple[Sequence[int], int]] | None = None,
    box3d: Sequence[int] | None = None,
    label: int = 1,
    box_to_mask: Callable[[int, tuple[int, int, int, int]], torch.Tensor] | None = None,
    box3d_seeds: int = 3,
) -> tuple[list[MaskPrompt], Limits]:
    """The guides of a prompt, and per label the slice range (and in-plane box) to stay within.

    Args:
        vol: ``(D, H, W)`` image with the propagation axis first.
        shape: the image's ``(X, Y, Z)``, for messages and the prompt's grid.
        axis: the propagation axis.
        mask_prompt: ``(X, Y, Z)`` label volume, nonzero on any slices (see
            :func:`~pam_monai.prompts.core.mask_prompts_from_volume`).
        box: one inclusive ``(r0, c0, r1, c1)`` box on ``slice_index``.
        boxes: ``[(box, slice_index), ...]`` boxes on several slices (may be mixed with ``mask_prompt`` and ``box``).
        box3d: inclusive ``(i0, j0, k0, i1, j1, k1)``, a prompt on its own.
        label: the object's label for boxes.
        box_to_mask: ``(slice_index, box) -> (H, W)`` mask (Box2Mask); needed for boxes.
        box3d_seeds: slices a 3D box starts from.

    Raises:
        PromptError: no prompt, a 3D box with another prompt, a box outside the image or on a blank slice, or two
            prompts of one label on one slice.
    """
    box_list = [(tuple(int(v) for v in b), int(k)) for b, k in boxes or ()]
    if box is not None:
        if slice_index is None:
            raise PromptError("a 2D box needs the index of its slice (slice_index).")
        box_list.insert(0, (tuple(int(v) for v in box), int(slice_index)))
    if box3d is not None and (mask_prompt is not None or box_list):
        raise PromptError("a 3D box is a prompt on its own: give it without a mask prompt or 2D boxes.")
    if mask_prompt is None and not box_list and box3d is None:
        raise PromptError("give a prompt: a mask prompt, boxes with their slices, or a 3D box.")
    depth = vol.shape[0]
    seeds = _mask_seeds(vol, shape, axis, mask_prompt) if mask_prompt is not None else []
    limits: Limits = {s.label: (0, depth - 1, None) for s in seeds}
    box_prompts = []
    for b, k in box_list:  # every box is checked before any image content
        validate_box(b, k, shape, axis)  # type: ignore[arg-type]
    for b, k in box_list:
        require_contrast(vol[k], b, k)  # type: ignore[arg-type]
        box_prompts.append(BoxPrompt(k, b, label))  # type: ignore[arg-type]
        limits[label] = (0, depth - 1, None)
    if box3d is not None:
        if len(box3d) != 6:
            raise PromptError(f"a 3D box needs 6 numbers i0,j0,k0,i1,j1,k1, got {len(box3d)}.")
        prompt3d = Box3DPrompt(tuple(int(v) for v in box3d[:3]), tuple(int(v) for v in box3d[3:]), label)  # type: ignore[arg-type]
        seed_boxes = box3d_seed_boxes(prompt3d, shape, axis, box3d_seeds)
        # Seed slices on padding inside the box are skipped; a box that is blank throughout is an error.
        box_prompts = [b for b in seed_boxes if blank_value(vol[b.slice_index], b.box) is None]
        if not box_prompts:
            raise PromptError(
                f"the 3D box {tuple(int(v) for v in box3d)} is blank (one constant intensity) on its seed slices "
                f"{[b.slice_index for b in seed_boxes]}: put it around a part of the image that shows the object."
            )
        limits = {label: (prompt3d.start[axis], prompt3d.stop[axis], box_prompts[0].box)}
    taken = {(s.label, s.slice_index) for s in seeds}
    for b in box_prompts:
        if (b.label, b.slice_index) in taken:
            raise PromptError(f"slice {b.slice_index} has two prompts for label {b.label}; give one per slice.")
        taken.add((b.label, b.slice_index))
    if box_prompts and box_to_mask is None:
        raise ValueError("box prompts need a Box2Mask network (box2mask_network=...).")
    for b in box_prompts:
        assert box_to_mask is not None
        seeds.append(MaskPrompt(b.slice_index, box_to_mask(b.slice_index, b.box).to(vol.device), b.label, b.box))
    return seeds, limits


def front_limits(
    seed: MaskPrompt, seeds: Sequence[MaskPrompt], limits: tuple[int, int, tuple[int, ...] | None]
) -> tuple[int, int, bool, bool]:
    """How far a guide's two fronts go: up to the neighbouring guides of its object (slices between two guides
    get a prediction from each), else to the object's limits.

    Returns:
        ``(lower, upper, lower_is_guide, upper_is_guide)``: the last slice each way, and whether a guide ends it.
    """
    lower, upper = limits[0], limits[1]
    below = above = False
    for other in seeds:
        if other.label != seed.label or other.slice_index == seed.slice_index:
            continue
        if other.slice_index < seed.slice_index:
            lower, below = max(lower, other.slice_index + 1), True
        else:
            upper, above = min(upper, other.slice_index - 1), True
    return min(lower, seed.slice_index), max(upper, seed.slice_index), below, above
