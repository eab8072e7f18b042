"""3D Slicer ROI markups (``.mrk.json``) as PAM prompts.

A box drawn with Slicer's ROI tool is saved in world coordinates (LPS or RAS, millimetres). It becomes a prompt on the
image's voxel grid: the voxels whose centres lie inside the ROI. A flat ROI (one slice thick on the image's grid) is a
2D box on that slice, which Box2Mask turns into a mask; a solid ROI is a 3D box.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from pam_monai.errors import PromptError

__all__ = ["SlicerROI", "read_slicer_roi", "roi_prompt"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SlicerROI:
    """A box in RAS millimetres: ``center`` (3,), ``axes`` (3, 3) with the box's unit axes as columns, ``size`` (3,)."""

    center: np.ndarray
    axes: np.ndarray
    size: np.ndarray

    def corners(self) -> np.ndarray:
        """The eight corners, ``(8, 3)`` RAS millimetres."""
        signs = np.array(list(product((-0.5, 0.5), repeat=3)))
        return self.center + (signs * self.size) @ self.axes.T


def _vector(markup: dict[str, Any], key: str, length: int, path: Path) -> np.ndarray:
    values = markup.get(key)
    try:
        vector = np.asarray(values, dtype=np.float64).reshape(length)
    except (TypeError, ValueError):
        raise PromptError(f"{path}: the ROI's {key!r} must be {length} numbers, got {values!r}.") from None
    if not np.isfinite(vector).all():
        raise PromptError(f"{path}: the ROI's {key!r} has non-finite values: {values!r}.")
    return vector


def read_slicer_roi(path: str | os.PathLike) -> SlicerROI:
    """Read the one ROI of a Slicer markups file.

    The ``orientation`` (nine numbers, a row-major 3x3 matrix whose columns are the box's axes; identity when absent)
    and the ``coordinateSystem`` (``LPS``, Slicer's default on disk, or ``RAS``) are honoured.

    Raises:
        PromptError: when the file is missing, not JSON, or does not hold exactly one ROI with a center and a size.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"{path}: no such ROI file.")
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PromptError(f"{path}: not a Slicer markups JSON file ({error}).") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise PromptError(f"{path}: not a Slicer markups file (no 'markups' list).")
    rois = [m for m in markups if isinstance(m, dict) and m.get("type") == "ROI"]
    if len(rois) != 1:
        kinds = sorted({str(m.get("type")) for m in markups if isinstance(m, dict)})
        raise PromptError(f"{path}: need exactly one ROI markup, found {len(rois)} (markup types: {kinds}).")
    roi = rois[0]
    system = str(roi.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise PromptError(f"{path}: unknown coordinateSystem {system!r}; Slicer writes LPS or RAS.")
    center, size = _vector(roi, "center", 3, path), _vector(roi, "size", 3, path)
    if (size < 0).any():
        raise PromptError(f"{path}: the ROI's size must not be negative, got {size.tolist()}.")
    axes = _vector(roi, "orientation", 9, path).reshape(3, 3) if "orientation" in roi else np.eye(3)
    if system == "LPS":
        center, axes = _LPS_TO_RAS @ center, _LPS_TO_RAS @ axes
    return SlicerROI(center=center, axes=axes, size=size)


def roi_prompt(roi: SlicerROI, affine: np.ndarray, shape: tuple[int, int, int]) -> dict[str, Any]:
    """The prompt covering the voxels whose centres lie in ``roi``'s voxel-space bounding box.

    Args:
        roi: the ROI in RAS millimetres.
        affine: ``(4, 4)`` voxel-to-RAS matrix of the image (as MONAI's ``LoadImage`` gives it).
        shape: the image's ``(X, Y, Z)`` shape.

    Returns:
        ``{"box3d": (i0, j0, k0, i1, j1, k1)}``, or, for an ROI one slice thick along array axis ``a``,
        ``{"box": (r0, c0, r1, c1), "slice_index": k, "axis": a}``; keywords of ``PropagationInferer.propagate``.

    Raises:
        PromptError: when the ROI misses the image or is thinner than a voxel in more than one direction.
    """
    affine = np.asarray(affine, dtype=np.float64)
    corners = np.c_[roi.corners(), np.ones(8)] @ np.linalg.inv(affine).T
    low, high = corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)
    start, stop = [], []
    for axis in range(3):
        first, last = math.ceil(low[axis] - 1e-6), math.floor(high[axis] + 1e-6)
        if first > last:  # thinner than a voxel between two centres: the nearest slice
            first = last = round((low[axis] + high[axis]) / 2)
        if last < 0 or first > shape[axis] - 1:
            raise PromptError(
                f"the ROI lies outside the image: voxel range {first}..{last} along axis {axis}, "
                f"the image has 0..{shape[axis] - 1}."
            )
        start.append(max(first, 0))
        stop.append(min(last, shape[axis] - 1))
    flat = [axis for axis in range(3) if start[axis] == stop[axis]]
    if not flat:
        return {"box3d": (*start, *stop)}
    if len(flat) > 1:
        raise PromptError(f"the ROI is one voxel thin along axes {flat}; draw a box with an area on one slice.")
    axis = flat[0]
    rows, cols = (a for a in range(3) if a != axis)
    return {"box": (start[rows], start[cols], stop[rows], stop[cols]), "slice_index": start[axis], "axis": axis}
