"""Per-object segmentation metrics (DSC, sensitivity, specificity, HD95, ASD, NSD) and object irregularity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
from scipy.spatial import ConvexHull, Delaunay, QhullError

__all__ = ["binary_dice", "group_means", "irregularity", "object_metrics"]


def binary_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    m = torch.as_tensor(np.ascontiguousarray(mask, dtype=bool))
    return torch.stack((~m, m))[None].float()


def object_metrics(
    prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float = 2.0
) -> dict[str, float]:
    """Overlap and surface metrics of one object, distances in mm.

    Args:
        prediction: ``(X, Y, Z)`` boolean prediction.
        truth: ``(X, Y, Z)`` boolean ground truth (non-empty).
        spacing: voxel size in mm.
        nsd_tolerance_mm: tolerance of the normalised surface Dice.

    Returns:
        ``dsc``, ``sensitivity``, ``precision`` (0 for an empty prediction), ``specificity``, ``hd95``, ``asd``,
        ``nsd`` (distances are ``nan`` when the prediction is empty). Sensitivity below precision means a mask
        that is mostly too small; above it, one that is mostly too large.
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    tp = float((prediction & truth).sum())
    fp = float((prediction & ~truth).sum())
    fn = float((~prediction & truth).sum())
    tn = float(prediction.size) - tp - fp - fn
    result = {
        "dsc": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "sensitivity": tp / max(tp + fn, 1.0),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "specificity": tn / max(tn + fp, 1.0),
        "hd95": float("nan"),
        "asd": float("nan"),
        "nsd": 0.0,
    }
    if not prediction.any():
        return result
    # Surface metrics only need the region around both masks: crop to their joint bounding box plus a margin.
    joint = prediction | truth
    lows = [max(int(np.nonzero(joint.any(axis=tuple(b for b in range(3) if b != a)))[0][0]) - 2, 0) for a in range(3)]
    highs = [int(np.nonzero(joint.any(axis=tuple(b for b in range(3) if b != a)))[0][-1]) + 3 for a in range(3)]
    window = tuple(slice(lo, hi) for lo, hi in zip(lows, highs))
    y_pred, y = _one_hot(prediction[window]), _one_hot(truth[window])
    spacing = [float(s) for s in spacing]
    result["hd95"] = float(compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)[0, 0])
    result["asd"] = float(compute_average_surface_distance(y_pred, y, symmetric=True, spacing=spacing)[0, 0])
    result["nsd"] = float(compute_surface_dice(y_pred, y, class_thresholds=[nsd_tolerance_mm], spacing=spacing)[0, 0])
    return result


def _hull_voxels(coords: np.ndarray) -> int:
    """Voxels of the bounding box whose centres lie inside the convex hull of ``coords``."""
    try:
        hull = ConvexHull(coords)
    except QhullError:  # flat or degenerate objects are their own hull
        return len(coords)
    lows, highs = coords.min(0), coords.max(0) + 1
    grid = np.stack(np.meshgrid(*(np.arange(lo, hi) for lo, hi in zip(lows, highs)), indexing="ij"), -1)
    inside = Delaunay(coords[hull.vertices]).find_simplex(grid.reshape(-1, 3), tol=1e-9) >= 0
    return int(inside.sum())


def irregularity(mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """How irregular an object is (PAM paper); each ratio is 1 for a box-filling / convex / ball-like object.

    * ``box_ratio`` = |M| / |bounding box of M|;
    * ``convex_ratio`` = |M| / |voxels whose centres lie in the convex hull of M's voxel centres|;
    * ``iri`` (inverse rotational inertia) = RI of a ball of the same volume / RI(M), with
      ``RI(M) = sum ||x - c||^2 dV`` in mm, i.e. ``0.8 pi (3|M| / 4 pi)^(5/3) / RI(M)``.
    """
    mask = mask.astype(bool)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    count = int(mask.sum())
    if count == 0:
        return {"box_ratio": float("nan"), "convex_ratio": float("nan"), "iri": float("nan")}
    coords = np.argwhere(mask)
    extent = coords.max(0) - coords.min(0) + 1
    box_ratio = count / float(np.prod(extent))
    convex_ratio = count / max(_hull_voxels(coords), count)
    voxel = float(np.prod(spacing_arr))
    points = coords * spacing_arr
    inertia = float(((points - points.mean(0)) ** 2).sum()) * voxel
    volume = count * voxel
    ball = 0.8 * np.pi * (3 * volume / (4 * np.pi)) ** (5 / 3)
    return {"box_ratio": box_ratio, "convex_ratio": convex_ratio, "iri": min(ball / max(inertia, 1e-12), 1.0)}


def group_means(rows: Sequence[dict[str, Any]], group_by: Sequence[str], scores: Sequence[str]) -> list[dict[str, Any]]:
    """Mean of each of ``scores`` per group of rows (``group_by`` keys, sorted), with the rows' count as
    ``objects``; no ``group_by`` gives one overall row."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group_by), []).append(row)
    return [
        {**dict(zip(group_by, key)), "objects": len(members),
         **{s: float(np.mean([r[s] for r in members])) for s in scores}}
        for key, members in sorted(groups.items())
    ]  # fmt: skip
