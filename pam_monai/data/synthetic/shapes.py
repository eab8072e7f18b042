"""Object shapes of the synthetic volumes, drawn in physical millimetres (right at any anisotropic spacing).

Each ``shape_*`` function takes ``(rng, grid, centre_mm, radius_mm, min_radius_mm)`` and returns
``(slices, boolean mask over the slices)`` or ``None`` when the object misses the grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from pam_monai.data.synthetic.grid import Grid, random_rotation, unit_vector

__all__ = [
    "SHAPES",
    "SHAPE_FUNCS",
    "SHAPE_WEIGHTS",
    "ShapeResult",
    "largest_component",
    "semiaxes",
    "shape_bitten",
    "shape_blob",
    "shape_ellipsoid",
    "shape_horn",
    "shape_lobes",
    "shape_sheet",
    "shape_shell",
    "shape_torus",
    "shape_vessel",
]

SHAPES = ("ellipsoid", "blob", "vessel", "sheet", "shell", "torus", "lobes", "bitten", "horn")
SHAPE_WEIGHTS = np.array([0.16, 0.18, 0.13, 0.06, 0.09, 0.07, 0.13, 0.08, 0.1])

ShapeResult = tuple[tuple[slice, ...], np.ndarray] | None


def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    return lab == int(np.argmax(counts))


def semiaxes(rng: np.random.Generator, r: float, rmin: float, lo: float = 0.6, hi: float = 1.4) -> np.ndarray:
    return np.maximum(r * rng.uniform(lo, hi, 3), rmin)


def shape_ellipsoid(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    a = semiaxes(rng, r, rmin)
    bend = rng.uniform(0.2, 0.7) if rng.random() < 0.35 else 0.0
    amp = rng.uniform(0.0, 0.2)
    fr = g.frame(c, float(a.max()) * (1.25 + amp + bend), random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    u1 = u[1] - bend * u[0] ** 2 / a[0]  # banana-shaped bend along u0
    q = np.sqrt((u[0] / a[0]) ** 2 + (u1 / a[1]) ** 2 + (u[2] / a[2]) ** 2)
    if amp > 0:
        q = q + amp * g.box_noise(rng, sl, float(a.min()) * rng.uniform(0.6, 1.5))[0]
    return sl, q < 1.0


def shape_blob(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    a = semiaxes(rng, r * 1.15, rmin, 0.7, 1.3)
    fr = g.frame(c, float(a.max()) * 1.2, random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    q2 = (u[0] / a[0]) ** 2 + (u[1] / a[1]) ** 2 + (u[2] / a[2]) ** 2
    noise = g.box_noise(rng, sl, max(float(a.min()) * rng.uniform(0.35, 0.8), 1.5 * g.min_spacing))[0]
    field = (1.0 - q2) + rng.uniform(0.35, 0.8) * noise
    mask = (field > rng.uniform(0.05, 0.3)) & (q2 < 1.4)
    return sl, largest_component(mask) if mask.any() else mask


def shape_sheet(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    a, b = r * rng.uniform(1.0, 1.8), r * rng.uniform(0.8, 1.5)
    thick = max(rng.uniform(1.5, 4.5), 1.3 * g.max_spacing, 2.5 * g.min_spacing)
    k1, k2 = rng.uniform(-0.6, 0.6, 2)
    amp = rng.uniform(0.0, 0.25) * min(a, b)
    fr = g.frame(c, max(a, b) * 1.1 + amp * 3 + abs(k1) * a + abs(k2) * b + thick, random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    noise = g.box_noise(rng, sl, min(a, b) * rng.uniform(0.5, 1.2), n=2)
    height = k1 * u[0] ** 2 / a + k2 * u[1] ** 2 / b + amp * noise[0]
    inside = (u[0] / a) ** 2 + (u[1] / b) ** 2 + 0.15 * noise[1] < 1.0
    return sl, inside & (np.abs(u[2] - height) < 0.5 * thick)


def shape_shell(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    a = semiaxes(rng, r * 1.2, rmin, 0.75, 1.3)
    wall = max(rng.uniform(1.5, 5.0), 1.6 * g.max_spacing, 2.5 * g.min_spacing)
    wall = min(wall, 0.6 * float(a.min()))
    amp = rng.uniform(0.0, 0.12)
    fr = g.frame(c, float(a.max()) * (1.2 + amp), random_rotation(rng))
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


def shape_torus(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    big = r * rng.uniform(0.9, 1.4)
    tube = min(max(big * rng.uniform(0.25, 0.5), rmin), 0.8 * big)
    arc = rng.uniform(np.pi, 2.0 * np.pi) if rng.random() < 0.6 else 2.0 * np.pi
    fr = g.frame(c, (big + tube) * 1.2, random_rotation(rng))
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


def shape_lobes(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    """2-4 overlapping ellipsoids along a bent line: cross-sections split and merge from slice to slice."""
    n = int(rng.integers(2, 5))
    d = unit_vector(rng)
    centres, axes, rots = [c.copy()], [semiaxes(rng, r * 0.75, rmin, 0.6, 1.2)], [random_rotation(rng)]
    for _ in range(n - 1):
        d = d + 0.6 * unit_vector(rng)
        d /= np.linalg.norm(d)
        ax = semiaxes(rng, r * 0.75, rmin, 0.6, 1.2)
        step = (axes[-1].mean() + ax.mean()) * rng.uniform(0.45, 0.85)
        centres.append(centres[-1] + d * step)
        axes.append(ax)
        rots.append(random_rotation(rng))
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
    return sl, largest_component(q < 1.0)


def shape_bitten(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    """Ellipsoid with an ellipsoidal bite taken out of one side (kidney / crescent-like concave shape)."""
    a = semiaxes(rng, r * 1.1, rmin, 0.7, 1.3)
    fr = g.frame(c, float(a.max()) * 1.3, random_rotation(rng))
    if fr is None:
        return None
    sl, u = fr
    noise = g.box_noise(rng, sl, float(a.min()) * rng.uniform(0.6, 1.5))[0]
    q = np.sqrt((u[0] / a[0]) ** 2 + (u[1] / a[1]) ** 2 + (u[2] / a[2]) ** 2) + 0.1 * noise
    d = unit_vector(rng)
    off = d * a * rng.uniform(0.6, 1.0)
    b = a * rng.uniform(0.45, 0.8, 3)
    qb = ((u[0] - off[0]) / b[0]) ** 2 + ((u[1] - off[1]) / b[1]) ** 2 + ((u[2] - off[2]) / b[2]) ** 2
    mask = (q < 1.0) & (qb > 1.0)
    return sl, largest_component(mask) if mask.any() else mask


def shape_horn(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    """Curved tube along an arc, tapering to a thin tip, often flattened (ventricle horns, hippocampus, bowel
    bends): its cross-sections shrink, drift and vanish from slice to slice."""
    big = r * rng.uniform(0.8, 1.5)
    tube_min = max(0.55 * g.max_spacing, 1.1 * g.min_spacing, 1.0)
    rad0 = max(r * rng.uniform(0.25, 0.5), tube_min)
    tip = rng.uniform(0.15, 0.6)
    flat = rng.uniform(0.35, 1.0)
    arc = rng.uniform(0.5 * np.pi, 1.5 * np.pi)
    spiral = rng.uniform(-0.4, 0.4)
    fr = g.frame(c, big * (1.0 + abs(spiral)) + 1.5 * rad0, random_rotation(rng))
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
    return sl, largest_component(mask) if mask.any() else mask


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


def shape_vessel(rng: np.random.Generator, g: Grid, c: np.ndarray, r: float, rmin: float) -> ShapeResult:
    """Branching tube tree: random-walk splines with tapering radius, rasterised with a distance transform."""
    step = 0.45 * g.min_spacing
    tube_min = max(0.55 * g.max_spacing, 1.1 * g.min_spacing, 1.0)
    rad0 = max(r * rng.uniform(0.2, 0.4), tube_min)
    length = r * rng.uniform(3.0, 6.0)
    d0 = unit_vector(rng)
    pts, tan, rad = _walk(rng, c - d0 * length / 2, d0, rad0, length, step, tube_min)
    parts = [(pts, rad)]
    queue = [(pts, tan, rad, length, 0)]
    while queue:
        p, t, rr, ln, depth = queue.pop()
        if depth >= 2:
            continue
        for _ in range(int(rng.integers(0, 3 if depth == 0 else 2) + (depth == 0))):
            i = int(rng.integers(len(p) // 5, max(4 * len(p) // 5, len(p) // 5 + 1)))
            d = t[i] + rng.uniform(0.6, 1.5) * unit_vector(rng)
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


SHAPE_FUNCS: dict[str, Callable[..., ShapeResult]] = {
    "ellipsoid": shape_ellipsoid,
    "blob": shape_blob,
    "vessel": shape_vessel,
    "sheet": shape_sheet,
    "shell": shape_shell,
    "torus": shape_torus,
    "lobes": shape_lobes,
    "bitten": shape_bitten,
    "horn": shape_horn,
}
