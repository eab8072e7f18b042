"""Random geometry and smooth noise of the synthetic volumes, on a voxel grid in physical millimetres.

Smooth noise is built separably (random lattice values contracted with per-axis Gaussian interpolation matrices),
so a 96x96x64 field takes a fraction of a second on one core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["Grid", "interp_matrix", "loguniform", "random_rotation", "smooth_noise", "unit_vector"]


def interp_matrix(rng: np.random.Generator, size: int, step: float, cell: float) -> np.ndarray:
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


def smooth_noise(
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
    wx, wy, wz = (interp_matrix(rng, s, float(sp), float(scale_mm)) for s, sp in zip(shape, spacing))
    lattice = rng.standard_normal((n, wx.shape[1], wy.shape[1], wz.shape[1]), dtype=np.float32)
    out = lattice @ wz.T  # (n, lx, ly, Z)
    out = wy @ out  # (n, lx, Y, Z)
    out = (wx @ out.reshape(n, wx.shape[1], -1)).reshape(n, *shape)  # (n, X, Y, Z)
    return out


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (columns are the rotated frame's axes)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / max(np.linalg.norm(v), 1e-8)


class Grid:
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
        return smooth_noise(rng, shape, self.spacing, scale_mm, n)
