"""Appearance of the synthetic volumes: CT / MR tissue intensities, textured backgrounds, painted objects."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

from pam_monai.data.synthetic.grid import Grid, loguniform, smooth_noise

__all__ = ["HIDDEN_BOUNDARY_PROBABILITY", "draw_background", "object_intensity", "paint_objects"]

HIDDEN_BOUNDARY_PROBABILITY: float = 0.5
"""Default chance that an object touching an earlier-painted one copies its look (their shared boundary is hidden)."""
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


def draw_background(rng: np.random.Generator, g: Grid, modality: str, body: np.ndarray | None) -> np.ndarray:
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
        n = smooth_noise(rng, g.shape, g.spacing, rng.uniform(12.0, 60.0))[0]
        w = expit((n - rng.uniform(-0.3, 1.2)) / rng.uniform(0.03, 0.3))
        bg += w * (np.float32(v) - bg)
    scales = (rng.uniform(1.5, 3.0), rng.uniform(4.0, 9.0), rng.uniform(10.0, 25.0))
    for s, amp in zip(scales, tex_amps):
        if rng.random() < 0.8:
            bg += np.float32(amp) * smooth_noise(rng, g.shape, g.spacing, max(s, 1.2 * g.min_spacing))[0]
    if body is not None:
        bg = np.where(body, bg, np.float32(outside))
    return bg


def object_intensity(rng: np.random.Generator, modality: str, local: float, shape_kind: str) -> float:
    """Target mean intensity of an object given the mean of its surroundings (brighter or darker)."""
    if modality == "CT":
        if rng.random() < 0.45:
            vessel = shape_kind == "vessel" and rng.random() < 0.5
            tissue = "contrast" if vessel else str(rng.choice(_CT_OBJECT_TISSUES))
            target = rng.uniform(*_CT_TISSUES[tissue])
            if abs(target - local) >= 8.0:
                return float(target)
        contrast = loguniform(rng, 8.0, 450.0) if rng.random() < 0.8 else rng.uniform(8.0, 30.0)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        target = local + sign * contrast
        if target < -1000.0:
            target = local + contrast
        return float(np.clip(target, -1000.0, 2500.0))
    contrast = loguniform(rng, 0.05, 0.7) if rng.random() < 0.8 else rng.uniform(0.02, 0.06)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    target = local + sign * contrast
    if target < 0.01:
        target = local + contrast
    return float(target)


def paint_objects(
    rng: np.random.Generator,
    g: Grid,
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
        target = object_intensity(rng, modality, local, kinds[k - 1])
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
