"""User prompts: masks on slices, 2D boxes on slices, or a 3D box, checked against the image.

Coordinates are voxel indices of the image array in file order. ``axis`` is the array axis normal to the prompt
slice; the two remaining axes, in array order, are the slice's rows and columns, so for ``axis=2`` a box
``(i0, j0, i1, j1)`` spans rows ``i0..i1`` and columns ``j0..j1`` of ``volume[:, :, k]`` (inclusive).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from pam_monai.errors import PromptError

__all__ = [
    "Box3DPrompt",
    "BoxPrompt",
    "MaskPrompt",
    "PromptError",
    "blank_value",
    "box3d_seed_boxes",
    "mask_prompts_from_volume",
    "place_on_grid",
    "plane_axes",
    "read_mask_prompt",
    "require_contrast",
    "validate_box",
]


def plane_axes(axis: int) -> tuple[int, int]:
    """The array axes of a slice normal to ``axis`` (rows, columns)."""
    if axis not in (0, 1, 2):
        raise PromptError(f"axis must be 0, 1 or 2, got {axis}.")
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


@dataclass(frozen=True)
class BoxPrompt:
    """An inclusive box ``(r0, c0, r1, c1)`` on slice ``slice_index`` of the propagation axis."""

    slice_index: int
    box: tuple[int, int, int, int]
    label: int = 1


@dataclass
class MaskPrompt:
    """A ``(H, W)`` boolean mask on slice ``slice_index`` of the propagation axis.

    ``box`` is the inclusive ``(r0, c0, r1, c1)`` box the mask was made from, when it came from a box prompt.
    """

    slice_index: int
    mask: torch.Tensor
    label: int = 1
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Box3DPrompt:
    """An inclusive 3D box ``start..stop`` in volume array indices ``(i, j, k)``."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    label: int = 1


def validate_box(box: tuple[int, int, int, int], slice_index: int, volume_shape: tuple[int, ...], axis: int) -> None:
    """Raise :class:`PromptError` unless ``box`` on ``slice_index`` lies inside the image and has area."""
    rows, cols = plane_axes(axis)
    depth, height, width = volume_shape[axis], volume_shape[rows], volume_shape[cols]
    if not 0 <= slice_index < depth:
        raise PromptError(f"slice {slice_index} is out of range: axis {axis} has {depth} slices (0..{depth - 1}).")
    if len(box) != 4:
        raise PromptError(f"a box needs 4 numbers r0,c0,r1,c1, got {len(box)}.")
    r0, c0, r1, c1 = (int(v) for v in box)
    if r1 < r0 or c1 < c0:
        raise PromptError(f"box {tuple(box)} is inverted: need r0 <= r1 and c0 <= c1.")
    if r1 == r0 or c1 == c0:
        raise PromptError(f"box {tuple(box)} has zero area: it must span at least 2 pixels each way.")
    if r0 < 0 or c0 < 0 or r1 >= height or c1 >= width:
        raise PromptError(
            f"box {tuple(box)} lies outside the {height}x{width} slice (valid indices 0..{height - 1}, 0..{width - 1})."
        )


def blank_value(plane: torch.Tensor, box: tuple[int, int, int, int], margin: int = 2) -> float | None:
    """The one value the image has around a prompt when it is blank there (padding, a slice outside the scanned
    field), else ``None``. ``margin`` pixels around the inclusive ``(r0, c0, r1, c1)`` box are included, so a tight
    box on a flat object, whose inside alone is constant, still sees the object's edge."""
    r0, c0, r1, c1 = (int(v) for v in box)
    height, width = plane.shape[-2:]
    region = plane[
        max(r0 - margin, 0) : min(r1 + margin + 1, height), max(c0 - margin, 0) : min(c1 + margin + 1, width)
    ]
    low, high = float(region.min()), float(region.max())
    return low if high - low <= 1e-6 * max(1.0, abs(low), abs(high)) else None


def require_contrast(plane: torch.Tensor, box: tuple[int, int, int, int], slice_index: int, margin: int = 2) -> None:
    """Raise :class:`PromptError` when the image is blank (one constant value) around a prompt.

    A prompt on padding or on a slice outside the scanned field has nothing to segment; the networks would still
    return a shape there (see :func:`blank_value`).

    Args:
        plane: ``(H, W)`` intensities of the prompt slice.
        box: inclusive ``(r0, c0, r1, c1)`` around the prompt.
        slice_index: the slice's index, for the message.
        margin: pixels added on each side of the box (clipped to the slice).
    """
    value = blank_value(plane, box, margin)
    if value is not None:
        r0, c0, r1, c1 = (int(v) for v in box)
        raise PromptError(
            f"slice {slice_index} is blank around the prompt (every voxel in rows {r0}..{r1}, columns {c0}..{c1} is "
            f"{value:g}): put the prompt on a slice that shows the object."
        )


def place_on_grid(
    prompt: torch.Tensor | np.ndarray,
    prompt_affine: np.ndarray | torch.Tensor,
    shape: tuple[int, ...],
    affine: np.ndarray | torch.Tensor,
    name: str = "the mask prompt",
) -> torch.Tensor:
    """A mask prompt on the image's grid.

    A prompt saved on the image's voxel lattice but with another extent is placed at its offset: 3D Slicer, for
    one, crops saved segmentations to the segments' extent. A prompt on any other grid (spacing, direction, or an
    offset that is not a whole number of voxels) is refused rather than resampled, since resampling a one-slice
    mask can smear it over several slices or lose it between them.

    Args:
        prompt: ``(X', Y', Z')`` label image.
        prompt_affine: its ``(4, 4)`` voxel-to-world matrix.
        shape: the image's ``(X, Y, Z)``.
        affine: the image's ``(4, 4)`` voxel-to-world matrix.
        name: what to call the prompt in messages (e.g. its file name).

    Returns:
        ``(X, Y, Z)`` label tensor.
    """
    prompt = torch.as_tensor(np.asarray(prompt) if not isinstance(prompt, torch.Tensor) else prompt)
    prompt = prompt.reshape(prompt.shape[-3:]) if prompt.ndim == 4 and prompt.shape[0] == 1 else prompt
    if prompt.ndim != 3:
        raise PromptError(f"{name} must be 3D, got shape {tuple(prompt.shape)}.")
    image_affine = np.asarray(affine, dtype=np.float64)
    relation = np.linalg.solve(image_affine, np.asarray(prompt_affine, dtype=np.float64))
    offset = np.round(relation[:3, 3])
    # Tolerances: a hundredth of a voxel, as headers round spacings and origins.
    if not (np.allclose(relation[:3, :3], np.eye(3), atol=1e-2) and np.allclose(relation[:3, 3], offset, atol=1e-2)):
        raise PromptError(
            f"{name}: its grid (shape {tuple(prompt.shape)}, spacing, direction or origin) differs from the image's "
            f"(shape {tuple(shape)}); save the prompt on the image's grid."
        )
    if tuple(prompt.shape) == tuple(shape) and not offset.any():
        return prompt
    start = [int(v) for v in offset]
    placed = torch.zeros(tuple(shape), dtype=prompt.dtype)
    target = tuple(slice(max(o, 0), min(o + n, size)) for o, n, size in zip(start, prompt.shape, shape))
    source = tuple(slice(t.start - o, t.stop - o) for t, o in zip(target, start))
    if any(t.start >= t.stop for t in target):
        raise PromptError(f"{name}: it lies entirely outside the image (offset {start} voxels on the image's grid).")
    placed[target] = prompt[source]
    if int(torch.count_nonzero(placed)) != int(torch.count_nonzero(prompt)):
        raise PromptError(f"{name}: part of the prompt lies outside the image (offset {start} voxels).")
    return placed


def read_mask_prompt(
    path: str | os.PathLike, shape: tuple[int, ...], affine: np.ndarray | torch.Tensor | None = None
) -> torch.Tensor:
    """Read a mask-prompt image and put it on the image's grid (:func:`place_on_grid`); without the image's
    ``affine`` the prompt must have the image's ``shape``.

    Returns:
        ``(X, Y, Z)`` label tensor.
    """
    from pam_monai.data.io import load_volume  # late: io reads other formats than NIfTI with MONAI

    mask, mask_affine = load_volume(path)
    if affine is not None:
        return place_on_grid(mask, mask_affine, shape, affine, str(path))
    if tuple(mask.shape[-3:]) != tuple(shape):
        raise PromptError(
            f"{path}: the prompt's grid {tuple(mask.shape[-3:])} differs from the image's {tuple(shape)}."
        )
    return mask


def mask_prompts_from_volume(prompt: torch.Tensor | np.ndarray, axis: int) -> list[MaskPrompt]:
    """Split a prompt label volume into one :class:`MaskPrompt` per label value and marked slice.

    Any number of slices may be marked, and each label on its own set of slices: every marked slice of a label is
    a guide for that object.

    Args:
        prompt: ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) label image, zero except on the prompt slices normal to ``axis``.
        axis: the propagation axis.

    Returns:
        the masks, ordered by label then slice.

    Raises:
        PromptError: if the prompt is empty, not 3D, not finite or has negative labels.
    """
    prompt = torch.as_tensor(np.asarray(prompt) if not isinstance(prompt, torch.Tensor) else prompt)
    if prompt.ndim == 4 and prompt.shape[0] == 1:
        prompt = prompt[0]
    if prompt.ndim != 3:
        raise PromptError(f"the mask prompt must be a 3D label image, got shape {tuple(prompt.shape)}.")
    plane_axes(axis)
    if not torch.isfinite(prompt.float()).all():
        raise PromptError("the mask prompt contains NaN or infinite values.")
    labels = prompt.round().to(torch.int64).movedim(axis, 0)
    if (labels < 0).any():
        raise PromptError("the mask prompt has negative label values; use 1..N for objects and 0 for background.")
    marked = torch.nonzero(labels.flatten(1).any(dim=1)).flatten().tolist()
    if not marked:
        raise PromptError("the mask prompt is empty: no nonzero voxel.")
    found = []
    for index in marked:
        plane = labels[index]
        found += [MaskPrompt(index, plane == value, int(value)) for value in torch.unique(plane).tolist() if value > 0]
    return sorted(found, key=lambda p: (p.label, p.slice_index))


def box3d_seed_boxes(
    prompt: Box3DPrompt, volume_shape: tuple[int, ...], axis: int, num_seeds: int = 3
) -> list[BoxPrompt]:
    """The 2D boxes a 3D box starts from: ``num_seeds`` slices spread over its inner half along ``axis``.

    Raises:
        PromptError: if the box is inverted, flat in-plane, or outside the image.
    """
    rows, cols = plane_axes(axis)
    for a in range(3):
        if prompt.stop[a] < prompt.start[a]:
            raise PromptError(f"3D box {prompt.start}..{prompt.stop} is inverted along axis {a}.")
        if prompt.start[a] < 0 or prompt.stop[a] >= volume_shape[a]:
            raise PromptError(
                f"3D box {prompt.start}..{prompt.stop} lies outside the image of shape {tuple(volume_shape)}."
            )
    first, last = prompt.start[axis], prompt.stop[axis]
    centre = (first + last) / 2
    half = (last - first) / 4
    offsets = np.linspace(-half, half, num_seeds) if num_seeds > 1 else np.zeros(1)
    indices = sorted({int(round(centre + o)) for o in offsets})
    box = (prompt.start[rows], prompt.start[cols], prompt.stop[rows], prompt.stop[cols])
    seeds = [BoxPrompt(k, box, prompt.label) for k in indices]
    for seed in seeds:
        validate_box(seed.box, seed.slice_index, volume_shape, axis)
    return seeds
