"""One generated volume: objects placed and painted, then slice thickness, bias fields and noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pam_monai.data.synthetic.grid import Grid, loguniform, smooth_noise, unit_vector
from pam_monai.data.synthetic.shapes import SHAPE_FUNCS, SHAPE_WEIGHTS, SHAPES
from pam_monai.data.synthetic.textures import HIDDEN_BOUNDARY_PROBABILITY, draw_background, paint_objects

__all__ = [
    "CLEAN_FRACTION",
    "CT_INTENSITY_RANGE",
    "HIDDEN_BOUNDARY_PROBABILITY",
    "IN_PLANE_SPACING_RANGE",
    "MIN_OBJECT_VOXELS",
    "MODALITIES",
    "SLICE_SPACING_RANGE",
    "SyntheticVolume",
    "generate_volume",
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
MODALITIES: tuple[str, ...] = ("CT", "MR")
"""The two modalities (intensity models)."""
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


def _draw_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    sx = loguniform(rng, *IN_PLANE_SPACING_RANGE)
    sy = sx if rng.random() < 0.8 else loguniform(rng, *IN_PLANE_SPACING_RANGE)
    sz = float(np.clip(sx * rng.uniform(0.9, 1.1), *SLICE_SPACING_RANGE)) if rng.random() < 0.2 else None
    if sz is None:
        sz = loguniform(rng, *SLICE_SPACING_RANGE)
    return round(sx, 4), round(sy, 4), round(sz, 4)


def _body_mask(rng: np.random.Generator, g: Grid) -> np.ndarray | None:
    """In-plane elliptic body/head outline (deformed, varying along the slice axis), or ``None`` (no outline)."""
    if rng.random() > 0.55:
        return None
    ex, ey = g.extent[0], g.extent[1]
    cx, cy = ex * rng.uniform(0.4, 0.6), ey * rng.uniform(0.4, 0.6)
    ax, ay = ex * rng.uniform(0.4, 0.6), ey * rng.uniform(0.4, 0.6)
    x = (np.arange(g.shape[0]) * g.spacing[0] - cx)[:, None, None] / ax
    y = (np.arange(g.shape[1]) * g.spacing[1] - cy)[None, :, None] / ay
    noise = smooth_noise(rng, g.shape, g.spacing, float(min(ax, ay)) * rng.uniform(0.5, 1.0))[0]
    return (x**2 + y**2 + 0.12 * noise) < 1.0


def _synthesise(
    rng: np.random.Generator,
    g: Grid,
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
    img = draw_background(rng, g, modality, body)

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
            radii = sorted((loguniform(rng, r_lo, r_hi) for _ in range(n)), reverse=rng.random() < 0.7)
        for r in radii:
            if fallback:
                kind = "ellipsoid" if rng.random() < 0.5 else "lobes"
            else:
                kind = str(rng.choice(SHAPES, p=SHAPE_WEIGHTS / SHAPE_WEIGHTS.sum()))
            if placed and not fallback and rng.random() < 0.35:  # touch / overlap a previous object
                pc, pr = placed[int(rng.integers(len(placed)))]
                c = pc + unit_vector(rng) * (pr + r) * rng.uniform(0.55, 0.95)
            else:
                c = centre_point()
            res = SHAPE_FUNCS[kind](rng, g, c, r, rmin)
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
    paint_objects(rng, g, img, label, kinds, modality, texture, hidden_boundaries)
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
    drawn_modality = MODALITIES[int(rng.integers(2))]
    modality = drawn_modality if modality is None else str(modality).upper()
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
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
        fine = Grid((shape[0], shape[1], shape[2] * f), (spacing[0], spacing[1], spacing[2] / f))
        img, label, _ = _synthesise(rng, fine, modality, num_objects, min_voxels * f, clean, hidden)
        sigma = rng.uniform(0.3, 0.6) * f
        img = ndimage.gaussian_filter1d(img, sigma, axis=2, mode="nearest")
        img = img.reshape(shape[0], shape[1], shape[2], f).mean(axis=3)
        # objects that fall below ``min_voxels`` only after downsampling (rare) stay as unlabelled distractors
        label = _relabel(label[:, :, f // 2 :: f], min_voxels)
        use_pv = int(label.max()) >= 2  # (very rare) fewer than two objects left: redraw without partial volume
    if not use_pv:
        img, label, _ = _synthesise(rng, Grid(shape, spacing), modality, num_objects, min_voxels, clean, hidden)
    if clean:
        img = ndimage.gaussian_filter(img, rng.uniform(0.4, 1.2) / np.asarray(spacing), mode="nearest")
    noise_scale = np.float32(rng.uniform(0.0, 0.15) if clean else 1.0)

    if modality == "CT":
        if rng.random() < 0.15:  # mild smooth shading
            bias = np.exp(rng.uniform(0.02, 0.08) * smooth_noise(rng, shape, spacing, rng.uniform(60.0, 200.0))[0])
            img = (img + 1000.0) * bias - 1000.0
        sigma_n = loguniform(rng, 2.0, 40.0)
        noise = rng.standard_normal(shape, dtype=np.float32)
        if rng.random() < 0.5:  # correlated (in-plane) reconstruction noise
            noise = ndimage.gaussian_filter(noise, (0.7, 0.7, 0.0))
            noise /= max(float(noise.std()), 1e-6)
        img = img + np.float32(sigma_n) * noise_scale * noise
        img = np.clip(img, *CT_INTENSITY_RANGE)
    else:
        if rng.random() < 0.8:
            strength = rng.uniform(0.05, 0.35)
            img = img * np.exp(strength * smooth_noise(rng, shape, spacing, rng.uniform(50.0, 200.0))[0])
        img = np.maximum(img, 0.0)
        sigma_n = np.float32(loguniform(rng, 0.004, 0.05)) * noise_scale
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
