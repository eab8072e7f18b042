"""Procedural labelled 3D volumes for training object-agnostic slice-to-slice mask propagation.

PAM's PropMask network learns to carry a 2D mask from a guiding slice to its neighbours whatever the object is.
This module draws random labelled volumes that exercise exactly that skill, so they can pre-train the networks or
be mixed with real scans:

* **shapes** (generated in physical millimetres, so they look right at any anisotropic spacing): blobs
  (thresholded smooth noise in an envelope), deformed and bent ellipsoids, branching vessel trees (random-walk
  centre lines with varying radius), thin curved sheets, hollow (sometimes open) shells, tori and C-shapes,
  "bitten" concave ellipsoids, multi-lobed objects whose cross-sections split and merge from slice to slice, and
  curved horns that taper to a thin tip (their cross-sections shrink, drift and vanish);
  objects are often placed touching each other and later objects overwrite earlier ones;
* **hidden boundaries**: an object touching an earlier one often takes on that object's look (same mean, same
  texture statistics), so the two labels meet along a boundary the image does not show -- as hippocampus meets
  amygdala, or thalamus meets the surrounding grey matter. Only the guide mask tells where such a boundary runs,
  so propagation has to carry it from slice to slice instead of following an edge;
* **appearance**: organ-like tissue patches and multi-scale texture in the background (unlabelled distractors),
  objects brighter or darker than their local surroundings with contrast from barely visible to strong, internal
  texture, enhancing rims, sharp or blurred edges, an optional body outline surrounded by air;
* **clean volumes** (a fifth): flat objects, a smoothed image and almost no noise, like an averaged template;
* **acquisition**: partial-volume effect (generated on a 3x finer slice grid, blurred and averaged down along
  the slice axis), smooth multiplicative bias fields, Gaussian (CT) or Rician (MR) noise;
* **intensity ranges**: CT-like Hounsfield units (air -1000, fat, soft tissue, contrast, bone; clipped to
  [-1024, 3071]) or MR-like non-negative values on an arbitrary scale (0..1 up to 0..~4000).

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed (and arguments) gives identical arrays.
Smooth noise is built separably (random lattice values contracted with per-axis Gaussian interpolation matrices),
so a 96x96x64 volume takes a fraction of a second on one core.

Entry point::

    python -m pam_monai.data.synthetic OUT_DIR --num-volumes 100 --shape 96 96 64 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import Dataset
from scipy import ndimage
from scipy.special import expit

__all__ = [
    "CT_INTENSITY_RANGE",
    "MIN_OBJECT_VOXELS",
    "SLICE_SPACING_RANGE",
    "IN_PLANE_SPACING_RANGE",
    "SyntheticVolume",
    "SyntheticVolumeDataset",
    "generate_volume",
    "write_synthetic_datalist",
    "main",
]

#: Clip range of CT-like volumes (Hounsfield units).
CT_INTENSITY_RANGE: tuple[float, float] = (-1024.0, 3071.0)
#: Range (mm) from which in-plane spacings are drawn.
IN_PLANE_SPACING_RANGE: tuple[float, float] = (0.5, 2.0)
#: Range (mm) from which the slice spacing (axis 2) is drawn.
SLICE_SPACING_RANGE: tuple[float, float] = (0.5, 5.0)
#: Objects with fewer voxels than this are dropped (label set to 0) before relabelling.
MIN_OBJECT_VOXELS: int = 200
CLEAN_FRACTION: float = 0.2
"""Share of "clean" volumes: flat untextured objects, a smooth image and almost no noise (templates, denoised scans)."""
HIDDEN_BOUNDARY_PROBABILITY: float = 0.5
"""Default chance that an object touching an earlier-painted one copies its look (their shared boundary is hidden)."""

_MODALITIES = ("CT", "MR")
# Tissue classes for CT backgrounds and objects: (low, high) HU.
_CT_TISSUES: dict[str, tuple[float, float]] = {
    "lung": (-900.0, -700.0),
    "fat": (-140.0, -60.0),
    "fluid": (-10.0, 25.0),
    "soft": (25.0, 65.0),
    "organ": (50.0, 140.0),
    "contrast": (150.0, 380.0),
    "bone": (300.0, 1300.0),
}
_CT_BACKGROUND_TISSUES = ("fat", "fluid", "soft", "soft", "organ", "organ", "lung")
_CT_OBJECT_TISSUES = ("fat", "fluid", "soft", "organ", "organ", "contrast", "contrast", "bone", "lung")
_SHAPES = ("ellipsoid", "blob", "vessel", "sheet", "shell", "torus", "lobes", "bitten", "horn")
_SHAPE_WEIGHTS = np.array([0.16, 0.18, 0.13, 0.06, 0.09, 0.07, 0.13, 0.08, 0.1])
_PV_FACTOR = 3  # fine slices per output slice when simulating partial volume


@dataclass
class SyntheticVolume:
    """One generated volume.

    Attributes:
        image: intensities, float32, shape ``(X, Y, Z)``; axis 2 is the slice axis (spacing ``spacing[2]``).
        label: object labels ``0`` (background) and ``1..N`` (consecutive), uint8 (int16 if N > 255),
            shape ``(X, Y, Z)``.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        modality: ``"CT"`` (Hounsfield units) or ``"MR"`` (non-negative arbitrary scale).
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    modality: str

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world matrix, float64 shape ``(4, 4)``: ``diag(sx, sy, sz, 1)`` (origin at 0)."""
        return np.diag([*map(float, self.spacing), 1.0])

    @property
    def num_objects(self) -> int:
        """Number of labelled objects ``N`` (labels are ``1..N``)."""
        return int(self.label.max())


# ----------------------------------------------------------------------------------------------------------------
# smooth noise and geometry helpers
# ----------------------------------------------------------------------------------------------------------------


def _interp_matrix(rng: np.random.Generator, size: int, step: float, cell: float) -> np.ndarray:
    """Gaussian interpolation weights from a random lattice (pitch ``cell`` mm) to ``size`` voxels (pitch ``step``).

    Returns:
        float32 array of shape ``(size, n_lattice)`` whose rows have unit L2 norm (so the noise has unit variance).
    """
    x = np.arange(size, dtype=np.float64) * step
    n = int(np.ceil(size * step / cell)) + 4
    centres = (np.arange(n) - 2.0) * cell - rng.uniform(0.0, cell)
    w = np.exp(-0.5 * ((x[:, None] - centres[None, :]) / (0.65 * cell)) ** 2)
    w[w < 1e-4] = 0.0  # truncate the kernel (and avoid float32 denormals, which make BLAS very slow)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def _smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], scale_mm: float, n: int = 1
) -> np.ndarray:
    """Zero-mean, unit-variance smooth Gaussian noise with correlation length ~``scale_mm`` in physical space.

    Coarse scales: random lattice values (pitch ``scale_mm``) contracted with per-axis Gaussian interpolation
    matrices (three small matrix products). Scales of a few voxels: Gaussian-filtered white noise.

    Args:
        rng: random generator.
        shape: ``(X, Y, Z)`` voxels.
        spacing: ``(sx, sy, sz)`` mm.
        scale_mm: feature size in mm.
        n: number of independent fields.

    Returns:
        float32 array of shape ``(n, X, Y, Z)``.
    """
    shape = tuple(int(s) for s in shape)
    if scale_mm < 3.0 * min(spacing):
        sigma = [0.0] + [0.4 * scale_mm / sp for sp in spacing]
        out = ndimage.gaussian_filter(rng.standard_normal((n, *shape), dtype=np.float32), sigma, truncate=3.0)
        out /= np.maximum(out.reshape(n, -1).std(axis=1), 1e-6).astype(np.float32)[:, None, None, None]
        return out
    wx, wy, wz = (_interp_matrix(rng, s, float(sp), float(scale_mm)) for s, sp in zip(shape, spacing))
    lattice = rng.standard_normal((n, wx.shape[1], wy.shape[1], wz.shape[1]), dtype=np.float32)
    out = lattice @ wz.T  # (n, lx, ly, Z)
    out = wy @ out  # (n, lx, Y, Z)
    out = (wx @ out.reshape(n, wx.shape[1], -1)).reshape(n, *shape)  # (n, X, Y, Z)
    return out


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (columns are the rotated frame's axes)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / max(np.linalg.norm(v), 1e-8)


class _Grid:
    """Voxel grid of shape ``(X, Y, Z)`` with spacing ``(sx, sy, sz)`` mm; voxel ``i`` sits at ``i * spacing``."""

    def __init__(self, shape: Sequence[int], spacing: Sequence[float]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.extent = np.asarray(self.shape) * self.spacing
        self.min_spacing = float(self.spacing.min())
        self.max_spacing = float(self.spacing.max())

    def bbox(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[slice, ...] | None:
        """Voxel slices covering the physical box ``[lo_mm, hi_mm]`` clipped to the grid (``None`` if empty)."""
        lo = np.maximum(np.floor(lo_mm / self.spacing).astype(int), 0)
        hi = np.minimum(np.ceil(hi_mm / self.spacing).astype(int) + 1, self.shape)
        if np.any(hi - lo < 1):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def frame(
        self, centre: np.ndarray, radius: float, rot: np.ndarray
    ) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
        """Rotated object coordinates (mm) over the bbox of a sphere of ``radius`` mm around ``centre``.

        Returns:
            ``(slices, [u0, u1, u2])`` with each ``u`` a float32 array of the bbox shape, or ``None`` if the sphere
            misses the grid.
        """
        sl = self.bbox(centre - radius, centre + radius)
        if sl is None:
            return None
        axes = [(np.arange(s.start, s.stop) * sp - c).astype(np.float32) for s, sp, c in zip(sl, self.spacing, centre)]
        dx, dy, dz = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        r = rot.astype(np.float32)
        u = [dx * r[0, i] + dy * r[1, i] + dz * r[2, i] for i in range(3)]
        return sl, u

    def box_noise(self, rng: np.random.Generator, sl: tuple[slice, ...], scale_mm: float, n: int = 1) -> np.ndarray:
        """Smooth noise over a bbox, shape ``(n, *bbox_shape)``."""
        shape = tuple(s.stop - s.start for s in sl)
        return _smooth_noise(rng, shape, self.spacing, scale_mm, n)


# ----------------------------------------------------------------------------------------------------------------
# shapes: each returns (slices, boolean mask over the slices) or None
# ----------------------------------------------------------------------------------------------------------------

_ShapeResult = tuple[tuple[slice, ...], np.ndarray] | None


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    return lab == int(np.argmax(counts))


def _semiaxes(rng: np.random.Generator, r: float, rmin: float, lo: float = 0.6, hi: float = 1.4) -> np.ndarray:
    return np.maximum(r * rng.uniform(lo, hi, 3), rmin)


def _shape_ellipsoid(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    a = _semiaxes(rng, r, rmin)
    bend = rng.uniform(0.2, 0.7) if rng.random() < 0.35 else 0.0
    amp = rng.uniform(0.0, 0.2)
    fr = g.frame(c, float(a.max()) * (1.25 + amp + bend), _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    u1 = u[1] - bend * u[0] ** 2 / a[0]  # banana-shaped bend along u0
    q = np.sqrt((u[0] / a[0]) ** 2 + (u1 / a[1]) ** 2 + (u[2] / a[2]) ** 2)
    if amp > 0:
        q = q + amp * g.box_noise(rng, sl, float(a.min()) * rng.uniform(0.6, 1.5))[0]
    return sl, q < 1.0


def _shape_blob(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    a = _semiaxes(rng, r * 1.15, rmin, 0.7, 1.3)
    fr = g.frame(c, float(a.max()) * 1.2, _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    q2 = (u[0] / a[0]) ** 2 + (u[1] / a[1]) ** 2 + (u[2] / a[2]) ** 2
    noise = g.box_noise(rng, sl, max(float(a.min()) * rng.uniform(0.35, 0.8), 1.5 * g.min_spacing))[0]
    field = (1.0 - q2) + rng.uniform(0.35, 0.8) * noise
    mask = (field > rng.uniform(0.05, 0.3)) & (q2 < 1.4)
    return sl, _largest_component(mask) if mask.any() else mask


def _shape_sheet(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    a, b = r * rng.uniform(1.0, 1.8), r * rng.uniform(0.8, 1.5)
    thick = max(rng.uniform(1.5, 4.5), 1.3 * g.max_spacing, 2.5 * g.min_spacing)
    k1, k2 = rng.uniform(-0.6, 0.6, 2)
    amp = rng.uniform(0.0, 0.25) * min(a, b)
    fr = g.frame(c, max(a, b) * 1.1 + amp * 3 + abs(k1) * a + abs(k2) * b + thick, _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    noise = g.box_noise(rng, sl, min(a, b) * rng.uniform(0.5, 1.2), n=2)
    height = k1 * u[0] ** 2 / a + k2 * u[1] ** 2 / b + amp * noise[0]
    inside = (u[0] / a) ** 2 + (u[1] / b) ** 2 + 0.15 * noise[1] < 1.0
    return sl, inside & (np.abs(u[2] - height) < 0.5 * thick)


def _shape_shell(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    a = _semiaxes(rng, r * 1.2, rmin, 0.75, 1.3)
    wall = max(rng.uniform(1.5, 5.0), 1.6 * g.max_spacing, 2.5 * g.min_spacing)
    wall = min(wall, 0.6 * float(a.min()))
    amp = rng.uniform(0.0, 0.12)
    fr = g.frame(c, float(a.max()) * (1.2 + amp), _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    q = np.sqrt((u[0] / a[0]) ** 2 + (u[1] / a[1]) ** 2 + (u[2] / a[2]) ** 2)
    if amp > 0:
        q = q + amp * g.box_noise(rng, sl, float(a.min()) * rng.uniform(0.6, 1.5))[0]
    mask = (q < 1.0) & (q > 1.0 - wall / float(a.min()))
    if rng.random() < 0.5:  # open cup: cut the shell by a plane
        mask &= u[2] < a[2] * rng.uniform(-0.2, 0.7)
    return sl, mask


def _shape_torus(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    big = r * rng.uniform(0.9, 1.4)
    tube = min(max(big * rng.uniform(0.25, 0.5), rmin), 0.8 * big)
    arc = rng.uniform(np.pi, 2.0 * np.pi) if rng.random() < 0.6 else 2.0 * np.pi
    fr = g.frame(c, (big + tube) * 1.2, _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    rho = np.sqrt(u[0] ** 2 + u[1] ** 2)
    noise = g.box_noise(rng, sl, tube * rng.uniform(1.0, 2.5))[0]
    mask = (rho - big) ** 2 + u[2] ** 2 < (tube * (1.0 + 0.15 * noise)) ** 2
    if arc < 2.0 * np.pi:
        theta = np.mod(np.arctan2(u[1], u[0]), 2.0 * np.pi)
        mask &= theta < arc
    return sl, mask


def _shape_lobes(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    """2-4 overlapping ellipsoids along a bent line: cross-sections split and merge from slice to slice."""
    n = int(rng.integers(2, 5))
    d = _unit(rng)
    centres, axes, rots = [c.copy()], [_semiaxes(rng, r * 0.75, rmin, 0.6, 1.2)], [_random_rotation(rng)]
    for _ in range(n - 1):
        d = d + 0.6 * _unit(rng)
        d /= np.linalg.norm(d)
        ax = _semiaxes(rng, r * 0.75, rmin, 0.6, 1.2)
        step = (axes[-1].mean() + ax.mean()) * rng.uniform(0.45, 0.85)
        centres.append(centres[-1] + d * step)
        axes.append(ax)
        rots.append(_random_rotation(rng))
    pts = np.array(centres)
    mid = 0.5 * (pts.min(0) + pts.max(0))
    rad = float(np.linalg.norm(pts - mid, axis=1).max() + max(a.max() for a in axes) * 1.2)
    fr = g.frame(mid, rad, np.eye(3))
    if fr is None:
        return None
    sl, u = fr
    q = None
    for cc, ax, rot in zip(centres, axes, rots):
        rel = [u[i] - np.float32(cc[i] - mid[i]) for i in range(3)]
        v = [rel[0] * rot[0, i] + rel[1] * rot[1, i] + rel[2] * rot[2, i] for i in range(3)]
        qi = (v[0] / ax[0]) ** 2 + (v[1] / ax[1]) ** 2 + (v[2] / ax[2]) ** 2
        q = qi if q is None else np.minimum(q, qi)
    q = q + rng.uniform(0.0, 0.25) * g.box_noise(rng, sl, r * rng.uniform(0.5, 1.2))[0]
    return sl, _largest_component(q < 1.0)


def _shape_bitten(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    """Ellipsoid with an ellipsoidal bite taken out of one side (kidney / crescent-like concave shape)."""
    a = _semiaxes(rng, r * 1.1, rmin, 0.7, 1.3)
    fr = g.frame(c, float(a.max()) * 1.3, _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    noise = g.box_noise(rng, sl, float(a.min()) * rng.uniform(0.6, 1.5))[0]
    q = np.sqrt((u[0] / a[0]) ** 2 + (u[1] / a[1]) ** 2 + (u[2] / a[2]) ** 2) + 0.1 * noise
    d = _unit(rng)
    off = d * a * rng.uniform(0.6, 1.0)
    b = a * rng.uniform(0.45, 0.8, 3)
    qb = ((u[0] - off[0]) / b[0]) ** 2 + ((u[1] - off[1]) / b[1]) ** 2 + ((u[2] - off[2]) / b[2]) ** 2
    mask = (q < 1.0) & (qb > 1.0)
    return sl, _largest_component(mask) if mask.any() else mask


def _shape_horn(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    """Curved tube along an arc, tapering to a thin tip, often flattened (ventricle horns, hippocampus, bowel
    bends): its cross-sections shrink, drift and vanish from slice to slice."""
    big = r * rng.uniform(0.8, 1.5)
    tube_min = max(0.55 * g.max_spacing, 1.1 * g.min_spacing, 1.0)
    rad0 = max(r * rng.uniform(0.25, 0.5), tube_min)
    tip = rng.uniform(0.15, 0.6)
    flat = rng.uniform(0.35, 1.0)
    arc = rng.uniform(0.5 * np.pi, 1.5 * np.pi)
    spiral = rng.uniform(-0.4, 0.4)
    fr = g.frame(c, big * (1.0 + abs(spiral)) + 1.5 * rad0, _random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    rho = np.sqrt(u[0] ** 2 + u[1] ** 2)
    theta = np.mod(np.arctan2(u[1], u[0]), 2.0 * np.pi)
    t = np.clip(theta / arc, 0.0, 1.0)
    ring = big * (1.0 + spiral * t)
    rad = np.maximum(rad0 * (1.0 - (1.0 - tip) * t), tube_min)
    rad = rad * (1.0 + 0.12 * g.box_noise(rng, sl, rad0 * rng.uniform(1.5, 3.0))[0])
    tube = ((rho - ring) / rad) ** 2 + (u[2] / np.maximum(rad * flat, tube_min)) ** 2 < 1.0
    cap = ((u[0] - big) ** 2 + u[1] ** 2) / rad0**2 + (u[2] / max(rad0 * flat, tube_min)) ** 2 < 1.0
    mask = (tube & (theta <= arc)) | cap
    return sl, _largest_component(mask) if mask.any() else mask


def _walk(
    rng: np.random.Generator, p0: np.ndarray, d0: np.ndarray, rad0: float, length: float, step: float, rmin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random-walk centre line: points ``(n, 3)`` mm, tangents ``(n, 3)``, radii ``(n,)`` mm."""
    n = max(int(length / step), 4)
    w = ndimage.gaussian_filter1d(rng.standard_normal((n, 3)), sigma=max(n / 8.0, 1.0), axis=0)
    w /= max(float(w.std()), 1e-6)
    tangent = d0[None, :] + rng.uniform(0.3, 1.1) * (w - w[:1])
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    pts = p0[None, :] + np.cumsum(tangent * step, axis=0)
    wiggle = ndimage.gaussian_filter1d(rng.standard_normal(n), sigma=max(n / 6.0, 1.0))
    wiggle /= max(float(wiggle.std()), 1e-6)
    radii = rad0 * (1.0 + 0.2 * wiggle) * np.linspace(1.0, rng.uniform(0.5, 1.0), n)
    return pts, tangent, np.maximum(radii, rmin)


def _shape_vessel(rng: np.random.Generator, g: _Grid, c: np.ndarray, r: float, rmin: float) -> _ShapeResult:
    """Branching tube tree: random-walk splines with tapering radius, rasterised with a distance transform."""
    step = 0.45 * g.min_spacing
    tube_min = max(0.55 * g.max_spacing, 1.1 * g.min_spacing, 1.0)
    rad0 = max(r * rng.uniform(0.2, 0.4), tube_min)
    length = r * rng.uniform(3.0, 6.0)
    d0 = _unit(rng)
    pts, tan, rad = _walk(rng, c - d0 * length / 2, d0, rad0, length, step, tube_min)
    parts = [(pts, rad)]
    queue = [(pts, tan, rad, length, 0)]
    while queue:
        p, t, rr, ln, depth = queue.pop()
        if depth >= 2:
            continue
        for _ in range(int(rng.integers(0, 3 if depth == 0 else 2) + (depth == 0))):
            i = int(rng.integers(len(p) // 5, max(4 * len(p) // 5, len(p) // 5 + 1)))
            d = t[i] + rng.uniform(0.6, 1.5) * _unit(rng)
            d /= np.linalg.norm(d)
            child = _walk(
                rng, p[i], d, max(rr[i] * rng.uniform(0.5, 0.85), tube_min), ln * rng.uniform(0.35, 0.7), step, tube_min
            )
            parts.append((child[0], child[2]))
            queue.append((*child, ln * 0.5, depth + 1))
    pts = np.concatenate([p for p, _ in parts])
    rad = np.concatenate([q for _, q in parts])
    margin = float(rad.max()) + 2.0 * g.max_spacing
    lo_mm, hi_mm = pts.min(0) - margin, pts.max(0) + margin
    sl = g.bbox(lo_mm, hi_mm)
    if sl is None:
        return None
    # distance transform on a bbox padded beyond the grid so centre lines just outside still draw their tubes
    pad = np.ceil(margin / g.spacing).astype(int)
    start = np.array([s.start for s in sl]) - pad
    size = np.array([s.stop - s.start for s in sl]) + 2 * pad
    idx = np.round(pts / g.spacing).astype(int) - start
    keep = np.all((idx >= 0) & (idx < size), axis=1)
    if not keep.any():
        return None
    idx, rad = idx[keep], rad[keep]
    seeds = np.ones(tuple(size), dtype=bool)
    seeds[tuple(idx.T)] = False
    radius_map = np.zeros(tuple(size), dtype=np.float32)
    radius_map[tuple(idx.T)] = rad
    dist, near = ndimage.distance_transform_edt(seeds, sampling=g.spacing, return_indices=True)
    mask = dist <= radius_map[tuple(near)]
    inner = tuple(slice(int(p), int(p + s.stop - s.start)) for p, s in zip(pad, sl))
    return sl, mask[inner]


_SHAPE_FUNCS: dict[str, Callable[..., _ShapeResult]] = {
    "ellipsoid": _shape_ellipsoid,
    "blob": _shape_blob,
    "vessel": _shape_vessel,
    "sheet": _shape_sheet,
    "shell": _shape_shell,
    "torus": _shape_torus,
    "lobes": _shape_lobes,
    "bitten": _shape_bitten,
    "horn": _shape_horn,
}


# ----------------------------------------------------------------------------------------------------------------
# volume synthesis
# ----------------------------------------------------------------------------------------------------------------


def _draw_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    sx = _loguniform(rng, *IN_PLANE_SPACING_RANGE)
    sy = sx if rng.random() < 0.8 else _loguniform(rng, *IN_PLANE_SPACING_RANGE)
    sz = float(np.clip(sx * rng.uniform(0.9, 1.1), *SLICE_SPACING_RANGE)) if rng.random() < 0.2 else None
    if sz is None:
        sz = _loguniform(rng, *SLICE_SPACING_RANGE)
    return round(sx, 4), round(sy, 4), round(sz, 4)


def _body_mask(rng: np.random.Generator, g: _Grid) -> np.ndarray | None:
    """In-plane elliptic body/head outline (deformed, varying along the slice axis), or ``None`` (no outline)."""
    if rng.random() > 0.55:
        return None
    ex, ey = g.extent[0], g.extent[1]
    cx, cy = ex * rng.uniform(0.4, 0.6), ey * rng.uniform(0.4, 0.6)
    ax, ay = ex * rng.uniform(0.4, 0.6), ey * rng.uniform(0.4, 0.6)
    x = (np.arange(g.shape[0]) * g.spacing[0] - cx)[:, None, None] / ax
    y = (np.arange(g.shape[1]) * g.spacing[1] - cy)[None, :, None] / ay
    noise = _smooth_noise(rng, g.shape, g.spacing, float(min(ax, ay)) * rng.uniform(0.5, 1.0))[0]
    return (x**2 + y**2 + 0.12 * noise) < 1.0


def _background(rng: np.random.Generator, g: _Grid, modality: str, body: np.ndarray | None) -> np.ndarray:
    """Organ-like tissue patches plus multi-scale texture, float32 shape ``(X, Y, Z)`` (HU for CT, ~[0, 1] MR)."""
    k = int(rng.integers(2, 5))
    if modality == "CT":
        names = rng.choice(_CT_BACKGROUND_TISSUES, size=k)
        values = [rng.uniform(*_CT_TISSUES[str(nm)]) for nm in names]
        tex_amps = [rng.uniform(2.0, 20.0) for _ in range(3)]
        outside = -1000.0
    else:
        values = list(rng.uniform(0.12, 0.9, size=k))
        tex_amps = [rng.uniform(0.005, 0.05) for _ in range(3)]
        outside = rng.uniform(0.0, 0.03)
    bg = np.full(g.shape, values[0], dtype=np.float32)
    for v in values[1:]:
        n = _smooth_noise(rng, g.shape, g.spacing, rng.uniform(12.0, 60.0))[0]
        w = expit((n - rng.uniform(-0.3, 1.2)) / rng.uniform(0.03, 0.3))
        bg += w * (np.float32(v) - bg)
    scales = (rng.uniform(1.5, 3.0), rng.uniform(4.0, 9.0), rng.uniform(10.0, 25.0))
    for s, amp in zip(scales, tex_amps):
        if rng.random() < 0.8:
            bg += np.float32(amp) * _smooth_noise(rng, g.shape, g.spacing, max(s, 1.2 * g.min_spacing))[0]
    if body is not None:
        bg = np.where(body, bg, np.float32(outside))
    return bg


def _object_intensity(rng: np.random.Generator, modality: str, local: float, shape_kind: str) -> float:
    """Target mean intensity of an object given the mean of its surroundings (brighter or darker)."""
    if modality == "CT":
        if rng.random() < 0.45:
            vessel = shape_kind == "vessel" and rng.random() < 0.5
            tissue = "contrast" if vessel else str(rng.choice(_CT_OBJECT_TISSUES))
            target = rng.uniform(*_CT_TISSUES[tissue])
            if abs(target - local) >= 8.0:
                return float(target)
        contrast = _loguniform(rng, 8.0, 450.0) if rng.random() < 0.8 else rng.uniform(8.0, 30.0)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        target = local + sign * contrast
        if target < -1000.0:
            target = local + contrast
        return float(np.clip(target, -1000.0, 2500.0))
    contrast = _loguniform(rng, 0.05, 0.7) if rng.random() < 0.8 else rng.uniform(0.02, 0.06)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    target = local + sign * contrast
    if target < 0.01:
        target = local + contrast
    return float(target)


def _paint_objects(
    rng: np.random.Generator,
    g: _Grid,
    img: np.ndarray,
    label: np.ndarray,
    kinds: list[str],
    modality: str,
    texture_probability: float = 0.7,
    hidden_boundaries: float = HIDDEN_BOUNDARY_PROBABILITY,
) -> None:
    """Paint objects ``1..N`` of ``label`` into ``img`` in place (local contrast, texture, rims, blurred edges)."""
    struct = ndimage.generate_binary_structure(3, 1)
    margin = np.maximum(np.ceil(3.0 / g.spacing).astype(int), 2)
    unit = 1.0 if modality == "MR" else 100.0
    looks: dict[int, tuple[float, float, float]] = {}  # label -> (mean, texture amplitude, texture scale mm)
    for k, box in enumerate(ndimage.find_objects(label), start=1):
        if box is None:
            continue
        sl = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, g.shape))
        mask = label[sl] == k
        crop = img[sl]
        ring = ndimage.binary_dilation(mask, struct, iterations=2) & ~mask
        neighbours = sorted(set(np.unique(label[sl][ring]).tolist()) & set(looks))
        if neighbours and rng.random() < hidden_boundaries:
            looks[k] = target, amp, scale = looks[neighbours[int(rng.integers(len(neighbours)))]]
            val = np.full(mask.shape, target, dtype=np.float32)
            if amp > 0:
                val += np.float32(amp) * g.box_noise(rng, sl, scale)[0]
            crop[mask] = val[mask]  # a sharp label edge in an unbroken tissue: nothing to see
            continue
        local = float(crop[ring].mean()) if ring.any() else float(crop[mask].mean())
        target = _object_intensity(rng, modality, local, kinds[k - 1])
        contrast = abs(target - local)
        val = np.full(mask.shape, target, dtype=np.float32)
        amp, scale = 0.0, 0.0
        if rng.random() < texture_probability:  # internal texture
            amp = rng.uniform(0.0, 0.35) * contrast + rng.uniform(0.0, 0.03) * unit
            scale = rng.uniform(1.5, 10.0) + g.min_spacing
            val += np.float32(amp) * g.box_noise(rng, sl, scale)[0]
        looks[k] = (target, amp, scale)
        if rng.random() < 0.15 and mask.sum() > 1000:  # enhancing (or dark) rim
            rim = mask & ~ndimage.binary_erosion(mask, struct, iterations=int(rng.integers(1, 3)))
            val[rim] += np.float32(rng.uniform(-0.5, 1.0) * max(contrast, 0.05 * unit))
        alpha = mask.astype(np.float32)
        if rng.random() < 0.4:  # blurred edge
            sigma = rng.uniform(0.4, 2.0) / g.spacing
            alpha = ndimage.gaussian_filter(alpha, sigma)
        crop += alpha * (val - crop)


def _synthesise(
    rng: np.random.Generator,
    g: _Grid,
    modality: str,
    num_objects: tuple[int, int],
    min_voxels: int,
    clean: bool = False,
    hidden_boundaries: float = HIDDEN_BOUNDARY_PROBABILITY,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and noise-free image on grid ``g``.

    Returns:
        ``(image float32 (X, Y, Z), label int32 (X, Y, Z) with consecutive labels, shape kind per label)``.
    """
    body = _body_mask(rng, g)
    img = _background(rng, g, modality, body)

    ext = g.extent
    span = float(min(ext[0], ext[1], max(ext[2], 0.5 * min(ext[0], ext[1]))))
    voxel_volume = float(np.prod(g.spacing))
    r_vox = (2.5 * min_voxels * voxel_volume * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    rmin = max(1.2 * g.max_spacing, 2.0 * g.min_spacing, 1.5)  # smallest semi-axis: a couple of voxels thick
    r_hi = max(0.28 * span, 1.3 * rmin)
    r_lo = min(max(0.09 * span, r_vox, rmin), 0.7 * r_hi)

    def centre_point() -> np.ndarray:
        for _ in range(20):
            p = ext * rng.uniform(0.1, 0.9, 3)
            if body is None:
                return p
            i = np.minimum((p / g.spacing).astype(int), np.asarray(g.shape) - 1)
            if body[tuple(i)]:
                return p
        return p

    label = np.zeros(g.shape, dtype=np.int32)
    kinds: list[str] = []
    placed: list[tuple[np.ndarray, float]] = []

    def add_objects(n: int, fallback: bool = False) -> None:
        """Draw ``n`` objects; ``fallback``: large solid shapes painted only into unlabelled voxels."""
        if fallback:
            radii = [r_hi * rng.uniform(0.7, 1.0) for _ in range(n)]
        else:
            radii = sorted((_loguniform(rng, r_lo, r_hi) for _ in range(n)), reverse=rng.random() < 0.7)
        for r in radii:
            if fallback:
                kind = "ellipsoid" if rng.random() < 0.5 else "lobes"
            else:
                kind = str(rng.choice(_SHAPES, p=_SHAPE_WEIGHTS / _SHAPE_WEIGHTS.sum()))
            if placed and not fallback and rng.random() < 0.35:  # touch / overlap a previous object
                pc, pr = placed[int(rng.integers(len(placed)))]
                c = pc + _unit(rng) * (pr + r) * rng.uniform(0.55, 0.95)
            else:
                c = centre_point()
            res = _SHAPE_FUNCS[kind](rng, g, c, r, rmin)
            if res is None or not res[1].any():
                continue
            sl, mask = res
            if fallback:
                mask = mask & (label[sl] == 0)
            kinds.append(kind)
            label[sl][mask] = len(kinds)
            placed.append((c, r))

    add_objects(int(rng.integers(num_objects[0], num_objects[1] + 1)))
    for _ in range(8):  # make sure at least two objects survive the size filter
        counts = np.bincount(label.ravel(), minlength=len(kinds) + 1)
        if int((counts[1:] >= min_voxels).sum()) >= 2:
            break
        add_objects(2, fallback=True)

    counts = np.bincount(label.ravel(), minlength=len(kinds) + 1)
    kinds = [kind for kind, count in zip(kinds, counts[1:]) if count >= min_voxels]
    label = _relabel(label, min_voxels)
    texture = 0.1 if clean else 0.7
    _paint_objects(rng, g, img, label, kinds, modality, texture, hidden_boundaries)
    return img, label, kinds


def _relabel(label: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop labels with fewer than ``min_voxels`` voxels and renumber the rest ``1..N`` (order preserved)."""
    counts = np.bincount(label.ravel())
    keep = np.flatnonzero(counts[1:] >= min_voxels) + 1
    lut = np.zeros(len(counts), dtype=np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[label]


def generate_volume(
    seed: int,
    shape: Sequence[int] = (96, 96, 64),
    *,
    modality: str | None = None,
    num_objects: tuple[int, int] = (3, 8),
    spacing: Sequence[float] | None = None,
    min_voxels: int = MIN_OBJECT_VOXELS,
    partial_volume: bool | None = None,
    hidden_boundaries: float | None = None,
) -> SyntheticVolume:
    """Generate one random labelled volume.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed and arguments give identical arrays.
        shape: ``(X, Y, Z)`` voxels; axis 2 is the slice axis.
        modality: ``"CT"`` or ``"MR"``; drawn at random (50/50) if ``None``.
        num_objects: inclusive range of the number of objects drawn before small ones are dropped. If fewer than
            two survive, large solid objects are added into free space (at least two remain for volumes of
            ~32**3 voxels and up; for volumes of only a few thousand voxels lower ``min_voxels``).
        spacing: ``(sx, sy, sz)`` in mm; drawn at random if ``None`` (in-plane 0.5-2 mm, usually ``sx == sy``;
            slice spacing 0.5-5 mm).
        min_voxels: objects with fewer voxels in the final label map are dropped.
        partial_volume: simulate slice-thickness partial volume (generate on a 3x finer slice grid, blur and
            average down); drawn at random (30 % of volumes with slice spacing >= 1.5 mm) if ``None``. An object
            that drops below ``min_voxels`` only through the downsampling (rare) is left unlabelled.
        hidden_boundaries: chance in [0, 1] that an object touching an earlier one takes on its look, so that their
            shared boundary does not show in the image (default :data:`HIDDEN_BOUNDARY_PROBABILITY`). The labels do
            not depend on it.

    Returns:
        The :class:`SyntheticVolume` (image float32 ``(X, Y, Z)``, label uint8 ``(X, Y, Z)`` with labels ``1..N``).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be 3 sizes >= 4, got {shape}")
    if num_objects[0] < 1 or num_objects[1] < num_objects[0]:
        raise ValueError(f"num_objects must be a range (lo, hi) with 1 <= lo <= hi, got {num_objects}")
    hidden = HIDDEN_BOUNDARY_PROBABILITY if hidden_boundaries is None else float(hidden_boundaries)
    if not 0.0 <= hidden <= 1.0:
        raise ValueError(f"hidden_boundaries must be a probability in [0, 1], got {hidden_boundaries}")
    rng = np.random.default_rng(seed)
    drawn_modality = _MODALITIES[int(rng.integers(2))]
    modality = drawn_modality if modality is None else str(modality).upper()
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}")
    drawn_spacing = _draw_spacing(rng)
    if spacing is None:
        spacing = drawn_spacing
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers, got {spacing}")
    use_pv = rng.random() < 0.3 and spacing[2] >= 1.5
    # "clean": flat objects, smooth image, almost no noise -- an averaged template or a denoised reconstruction
    clean = rng.random() < CLEAN_FRACTION
    if partial_volume is not None:
        use_pv = bool(partial_volume)

    if use_pv:
        f = _PV_FACTOR
        fine = _Grid((shape[0], shape[1], shape[2] * f), (spacing[0], spacing[1], spacing[2] / f))
        img, label, _ = _synthesise(rng, fine, modality, num_objects, min_voxels * f, clean, hidden)
        sigma = rng.uniform(0.3, 0.6) * f
        img = ndimage.gaussian_filter1d(img, sigma, axis=2, mode="nearest")
        img = img.reshape(shape[0], shape[1], shape[2], f).mean(axis=3)
        # objects that fall below ``min_voxels`` only after downsampling (rare) stay as unlabelled distractors
        label = _relabel(label[:, :, f // 2 :: f], min_voxels)
        use_pv = int(label.max()) >= 2  # (very rare) fewer than two objects left: redraw without partial volume
    if not use_pv:
        img, label, _ = _synthesise(rng, _Grid(shape, spacing), modality, num_objects, min_voxels, clean, hidden)
    if clean:
        img = ndimage.gaussian_filter(img, rng.uniform(0.4, 1.2) / np.asarray(spacing), mode="nearest")
    noise_scale = np.float32(rng.uniform(0.0, 0.15) if clean else 1.0)

    if modality == "CT":
        if rng.random() < 0.15:  # mild smooth shading
            bias = np.exp(rng.uniform(0.02, 0.08) * _smooth_noise(rng, shape, spacing, rng.uniform(60.0, 200.0))[0])
            img = (img + 1000.0) * bias - 1000.0
        sigma_n = _loguniform(rng, 2.0, 40.0)
        noise = rng.standard_normal(shape, dtype=np.float32)
        if rng.random() < 0.5:  # correlated (in-plane) reconstruction noise
            noise = ndimage.gaussian_filter(noise, (0.7, 0.7, 0.0))
            noise /= max(float(noise.std()), 1e-6)
        img = img + np.float32(sigma_n) * noise_scale * noise
        img = np.clip(img, *CT_INTENSITY_RANGE)
    else:
        if rng.random() < 0.8:
            strength = rng.uniform(0.05, 0.35)
            img = img * np.exp(strength * _smooth_noise(rng, shape, spacing, rng.uniform(50.0, 200.0))[0])
        img = np.maximum(img, 0.0)
        sigma_n = np.float32(_loguniform(rng, 0.004, 0.05)) * noise_scale
        n1 = rng.standard_normal(shape, dtype=np.float32)
        n2 = rng.standard_normal(shape, dtype=np.float32)
        img = np.sqrt((img + sigma_n * n1) ** 2 + (sigma_n * n2) ** 2)  # Rician
        scale = 1.0 if rng.random() < 0.3 else rng.uniform(200.0, 4000.0) / max(float(np.percentile(img, 99.5)), 1e-3)
        img = img * np.float32(scale)

    n_obj = int(label.max())
    label = label.astype(np.uint8 if n_obj <= 255 else np.int16)
    return SyntheticVolume(
        image=np.ascontiguousarray(img, dtype=np.float32), label=label, spacing=spacing, modality=modality
    )


# ----------------------------------------------------------------------------------------------------------------
# dataset and datalist writer
# ----------------------------------------------------------------------------------------------------------------


class SyntheticVolumeDataset(Dataset):
    """MONAI dataset of synthetic volumes generated on the fly (item ``i`` from seed ``seed + i``).

    Each item is a dict::

        {"image": float32 (1, X, Y, Z), "label": uint8 (1, X, Y, Z), "spacing": float64 (3,),
         "seed": int, "modality": "CT" | "MR"}

    run through ``transform`` (a MONAI dictionary transform chain, without ``LoadImaged``). With
    ``as_meta_tensor=True`` the image and label are :class:`monai.data.MetaTensor` carrying the affine
    ``diag(spacing)``, so spatial transforms such as ``Spacingd`` work as on loaded NIfTI files. Mix with real data
    via ``torch.utils.data.ConcatDataset``.

    Args:
        num_volumes: dataset length.
        shape: ``(X, Y, Z)`` of every volume.
        seed: seed of item 0.
        transform: callable(s) applied to each item dict.
        cache: keep generated (untransformed) items in memory; later accesses return copies.
        as_meta_tensor: return image/label as ``MetaTensor`` with affine instead of numpy arrays.
        **generate_kwargs: passed to :func:`generate_volume` (``modality``, ``num_objects``, ``spacing``, ...).
    """

    def __init__(
        self,
        num_volumes: int,
        shape: Sequence[int] = (96, 96, 64),
        seed: int = 0,
        transform: Sequence[Callable] | Callable | None = None,
        *,
        cache: bool = False,
        as_meta_tensor: bool = False,
        **generate_kwargs: Any,
    ) -> None:
        if num_volumes < 0:
            raise ValueError(f"num_volumes must be >= 0, got {num_volumes}")
        super().__init__(data=[{"seed": int(seed) + i} for i in range(int(num_volumes))], transform=transform)
        self.shape = tuple(int(s) for s in shape)
        self.seed = int(seed)
        self.cache = cache
        self.as_meta_tensor = as_meta_tensor
        self.generate_kwargs = generate_kwargs
        self._cache: dict[int, dict[str, Any]] = {}

    def generate(self, index: int) -> dict[str, Any]:
        """The untransformed item ``index`` (see class docstring for the layout)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} volumes")
        index %= n
        if self.cache and index in self._cache:
            item = self._cache[index]
        else:
            vol = generate_volume(self.seed + index, self.shape, **self.generate_kwargs)
            item = {
                "image": vol.image[None],
                "label": vol.label[None],
                "spacing": np.asarray(vol.spacing, dtype=np.float64),
                "seed": self.seed + index,
                "modality": vol.modality,
            }
            if self.cache:
                self._cache[index] = item
        item = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in item.items()}
        if self.as_meta_tensor:
            from monai.data import MetaTensor

            affine = np.diag([*item["spacing"], 1.0])
            for key in ("image", "label"):
                item[key] = MetaTensor(item[key], affine=affine)
        return item

    def _transform(self, index: int) -> Any:
        return self.transform(self.generate(index))


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    _atomic_write(path, lambda p: nib.save(img, str(p)))


def write_synthetic_datalist(
    out_dir: str | os.PathLike,
    num_volumes: int,
    shape: Sequence[int] = (96, 96, 64),
    seed: int = 0,
    num_validation: int | None = None,
    *,
    progress: bool = False,
    **generate_kwargs: Any,
) -> Path:
    """Write synthetic volumes as NIfTI plus a Medical Segmentation Decathlon style ``dataset.json``.

    Layout: ``out_dir/imagesTr/synth_XXXX.nii.gz`` (float32) and ``out_dir/labelsTr/synth_XXXX.nii.gz`` (uint8),
    ``XXXX`` = volume index ``i`` (seed ``seed + i``), affine ``diag(sx, sy, sz, 1)``. The last ``num_validation``
    volumes form the ``validation`` list, the others ``training``; entries are ``{"image": relpath, "label":
    relpath}`` relative to ``out_dir``. Every file is written to a temporary name and renamed into place.

    Args:
        out_dir: output directory (created).
        num_volumes: number of volumes.
        shape: ``(X, Y, Z)``.
        seed: seed of volume 0.
        num_validation: validation volumes; default ``round(0.1 * num_volumes)`` (at least 1 if ``num_volumes >=
            2``).
        progress: show a tqdm progress bar.
        **generate_kwargs: passed to :func:`generate_volume`.

    Returns:
        Path of the written ``dataset.json``.
    """
    if num_volumes < 1:
        raise ValueError(f"num_volumes must be >= 1, got {num_volumes}")
    if num_validation is None:
        num_validation = max(round(0.1 * num_volumes), 1) if num_volumes >= 2 else 0
    if not 0 <= num_validation <= num_volumes:
        raise ValueError(f"num_validation must be in [0, {num_volumes}], got {num_validation}")
    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(num_volumes - 1)))
    entries: list[dict[str, str]] = []
    max_label = 0
    modalities: set[str] = set()
    indices: Any = range(num_volumes)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synthetic volumes", unit="vol")
    for i in indices:
        vol = generate_volume(seed + i, shape, **generate_kwargs)
        name = f"synth_{i:0{width}d}.nii.gz"
        _save_nifti(vol.image, vol.affine, out / "imagesTr" / name)
        _save_nifti(vol.label, vol.affine, out / "labelsTr" / name)
        entries.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
        max_label = max(max_label, vol.num_objects)
        modalities.add(vol.modality)
    n_train = num_volumes - num_validation
    labels = {"0": "background", **{str(k): f"object_{k}" for k in range(1, max_label + 1)}}
    meta = {
        "name": "PAMSynthetic",
        "description": "Procedural labelled volumes for object-agnostic mask propagation (pam_monai.data.synthetic)",
        "tensorImageSize": "3D",
        "modality": {"0": "/".join(sorted(modalities))},
        "labels": labels,
        "numTraining": n_train,
        "numValidation": num_validation,
        "seed": seed,
        "shape": list(map(int, shape)),
        "training": entries[:n_train],
        "validation": entries[n_train:],
    }
    path = out / "dataset.json"
    _atomic_write(path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pam_monai.data.synthetic OUT_DIR --num-volumes N --shape X Y Z --seed S``."""
    parser = argparse.ArgumentParser(description="Write synthetic labelled volumes and an MSD-style dataset.json.")
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--num-volumes", type=int, default=100, help="number of volumes (default 100)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0, help="seed of volume 0 (volume i uses seed + i)")
    parser.add_argument("--num-validation", type=int, default=None, help="validation volumes (default 10%%)")
    parser.add_argument("--modality", choices=_MODALITIES, default=None, help="fix the modality (default: random)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    kwargs = {} if args.modality is None else {"modality": args.modality}
    path = write_synthetic_datalist(
        args.out_dir,
        args.num_volumes,
        shape=tuple(args.shape),
        seed=args.seed,
        num_validation=args.num_validation,
        progress=not args.no_progress,
        **kwargs,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
