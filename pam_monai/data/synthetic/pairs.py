"""Cross-scene pairs: one object shape shown in several independent 2D scenes, for propagation across images.

The volumes of :mod:`~pam_monai.data.synthetic.volume` teach propagation between neighbouring slices, where the
object barely moves. Across images (``propagate-2d``: a few annotated examples, many other images) the object sits
elsewhere, at another size, orientation and shape, on another background and intensity scale. A scene pair draws::

    family f (the generator's shape families) and modality (CT / MR intensity model),
    one 3D object of family f, its largest 2D cross-section (guide) and cross-sections near it (queries),
    per scene: an independent textured background (the generator's tissue patches and coarse texture on a grid
        a quarter as fine, upsampled, plus fine texture), 0-3 distractor ellipses,
        the object's section scaled so its diameter is U(diameter_range) of the scene (log-uniform), rotated by
        U(-180, 180) degrees, elastically deformed (smooth displacement up to ``max_elastic`` of its radius),
        placed anywhere in the scene; painted with one look (contrast sign, magnitude within 0.8-1.25x, internal
        texture that moves with the object), edges blurred or sharp, noise and blur of its own,
        and an intensity gain / offset of its own (queries against the guide: log-uniform ``gain_range``,
        offset U(-offset_range, offset_range) times the guide scene's 0.5-99.5 percentile range).

Everything comes from ``numpy.random.default_rng(seed)``: the same seed and arguments give identical arrays. A pair
of one guide and four queries at 128 px costs about ten slice-to-slice tasks' time (one core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from pam_monai.data.synthetic.grid import Grid, loguniform, smooth_noise
from pam_monai.data.synthetic.shapes import SHAPE_FUNCS, SHAPE_WEIGHTS, SHAPES
from pam_monai.data.synthetic.textures import draw_background

__all__ = ["PAIR_FAMILIES", "ScenePair", "generate_scene_pair"]

PAIR_FAMILIES: tuple[str, ...] = SHAPES
"""The shape families a scene pair may show (all of the generator's)."""

_TEMPLATE = (72, 72, 24)  # grid (1 mm voxels) the object is drawn on
_MIN_SECTION = 60  # pixels of the object's guide cross-section, at least


@dataclass
class ScenePair:
    """One guide scene and ``Nq`` query scenes of the same object.

    Attributes:
        guide_image: ``(H, W)`` float32 intensities.
        guide_mask: ``(H, W)`` bool, the object in the guide scene.
        query_images: ``(Nq, H, W)`` float32 intensities.
        query_masks: ``(Nq, H, W)`` bool, the object in each query scene (never empty).
        family: the object's shape family.
        modality: ``"CT"`` or ``"MR"``.
        placements: ``(1 + Nq, 6)`` float64 per scene (guide first): centre row, centre column (pixels), scale
            (scene pixels per object millimetre), rotation (radians), intensity gain and offset.
    """

    guide_image: np.ndarray
    guide_mask: np.ndarray
    query_images: np.ndarray
    query_masks: np.ndarray
    family: str
    modality: str
    placements: np.ndarray


def _object_sections(
    rng: np.random.Generator, family: str, num_queries: int
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """The guide section and one section per query (within 3 slices of it, >= 60 % of its area), float32 2D."""
    grid = Grid(_TEMPLATE, (1.0, 1.0, 1.0))
    centre = np.asarray(_TEMPLATE, dtype=np.float64) / 2.0
    result = SHAPE_FUNCS[family](rng, grid, centre, rng.uniform(10.0, 15.0), 1.5)
    if result is None:
        return None
    region, mask = result
    volume = np.zeros(_TEMPLATE, dtype=bool)
    volume[region] = mask
    areas = volume.sum(axis=(0, 1))
    k0 = int(np.argmax(areas))
    if areas[k0] < _MIN_SECTION:
        return None
    near = [k for k in range(max(k0 - 3, 0), min(k0 + 4, len(areas))) if areas[k] >= 0.6 * areas[k0]]
    picks = rng.choice(np.asarray(near), size=num_queries)
    return volume[:, :, k0].astype(np.float32), [volume[:, :, int(k)].astype(np.float32) for k in picks]


def _sample(planes: np.ndarray, coords: np.ndarray, border: bool) -> np.ndarray:
    """Bilinear samples of ``planes`` ``(C, h, w)`` at pixel coordinates ``coords`` ``(2, H, W)`` -> ``(C, H, W)``.

    Outside the planes: the nearest border value (``border``) or 0.
    """
    h, w = planes.shape[-2:]
    grid = np.stack((coords[1] * (2.0 / max(w - 1, 1)) - 1.0, coords[0] * (2.0 / max(h - 1, 1)) - 1.0), axis=-1)
    out = F.grid_sample(
        torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None],
        torch.from_numpy(grid.astype(np.float32))[None],
        mode="bilinear",
        padding_mode="border" if border else "zeros",
        align_corners=True,
    )
    return out[0].numpy()


def _place(
    rng: np.random.Generator,
    section: np.ndarray,
    texture: np.ndarray,
    size: int,
    diameter_range: tuple[float, float],
    max_elastic: float,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Warp ``section`` (and its texture) into a ``size`` x ``size`` scene: scale, rotation, elastic, position.

    Returns:
        ``(alpha float32 (size, size) in [0, 1], texture float32 (size, size), (row, col, scale, angle))``.
    """
    rows, cols = np.nonzero(section > 0.5)
    centroid = np.array([rows.mean(), cols.mean()])
    radius = float(np.sqrt((rows - centroid[0]) ** 2 + (cols - centroid[1]) ** 2).max()) + 1.0
    elastic = rng.uniform(0.0, max_elastic) * radius
    reach = radius + 2.0 * elastic
    scale = loguniform(rng, *diameter_range) * size / (2.0 * reach)
    angle = rng.uniform(-np.pi, np.pi)
    half = reach * scale + 2.0
    row, col = (rng.uniform(half, max(size - half, half + 1e-3)) for _ in range(2))
    # Inverse map: scene pixel -> object coordinates (rotate back, unscale), then the displacement there.
    grid_r, grid_c = np.meshgrid(np.arange(size) - row, np.arange(size) - col, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    src = np.stack(
        ((cos * grid_r + sin * grid_c) / scale + centroid[0], (-sin * grid_r + cos * grid_c) / scale + centroid[1])
    )
    if elastic > 0:
        field = smooth_noise(rng, (*section.shape, 1), (1.0, 1.0, 1.0), radius * rng.uniform(0.4, 0.9), n=2)
        src = src + _sample(field[..., 0] * np.float32(elastic / 2.0), src, border=True)
    alpha, warped_texture = _sample(np.stack((section, texture)), src, border=False)  # texture matters inside only
    return alpha, warped_texture, (row, col, scale, angle)


def _background(rng: np.random.Generator, size: int, modality: str) -> np.ndarray:
    """A ``size`` x ``size`` textured background: the generator's tissue patches and coarse texture, drawn on a grid
    a quarter as fine (pixels of 4 x U(0.6, 1.6) mm) and upsampled bicubically, plus a fine texture of its own."""
    coarse = max(size // 4, 8)
    spacing = 4.0 * rng.uniform(0.6, 1.6)
    low = draw_background(rng, Grid((coarse, coarse, 1), (spacing, spacing, 1.0)), modality, None)[..., 0]
    image = F.interpolate(torch.from_numpy(low)[None, None], size=(size, size), mode="bicubic", align_corners=False)
    fine = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), rng.uniform(0.6, 1.5))
    amplitude = rng.uniform(2.0, 20.0) if modality == "CT" else rng.uniform(0.005, 0.05)
    return image[0, 0].numpy() + np.float32(amplitude / max(float(fine.std()), 1e-6)) * fine


def _distractors(rng: np.random.Generator, image: np.ndarray, contrast: float) -> None:
    """Paint 0-3 random ellipses (other structures, brighter or darker) into ``image`` in place."""
    count = int(rng.integers(0, 4))
    if count == 0:
        return
    size = image.shape[0]
    rr, cc = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    layer = np.zeros_like(image)
    for _ in range(count):
        a, b = rng.uniform(0.04, 0.2, 2) * size
        r0, c0, t = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, np.pi)
        u = ((rr - r0) * np.cos(t) + (cc - c0) * np.sin(t)) / a
        v = (-(rr - r0) * np.sin(t) + (cc - c0) * np.cos(t)) / b
        layer[u**2 + v**2 < 1.0] = rng.choice((-1.0, 1.0)) * abs(contrast) * rng.uniform(0.3, 1.5)
    image += ndimage.gaussian_filter(layer, rng.uniform(0.3, 1.5))


def generate_scene_pair(
    seed: int,
    size: int = 128,
    num_queries: int = 1,
    *,
    family: str | None = None,
    modality: str | None = None,
    diameter_range: Sequence[float] = (0.12, 0.6),
    max_elastic: float = 0.15,
    gain_range: Sequence[float] = (0.7, 1.4),
    offset_range: float = 0.15,
) -> ScenePair:
    """Draw one guide scene and ``num_queries`` query scenes of the same object (see the module docstring).

    Args:
        seed: seed of ``numpy.random.default_rng``.
        size: side of every scene in pixels (>= 32).
        num_queries: query scenes (>= 1).
        family: one of :data:`PAIR_FAMILIES`; drawn with the generator's shape weights if ``None``.
        modality: ``"CT"`` or ``"MR"``; drawn 50/50 if ``None``.
        diameter_range: the object's diameter relative to the scene side, drawn log-uniformly per scene.
        max_elastic: largest elastic displacement relative to the object's radius.
        gain_range: a query's intensity gain relative to the guide, log-uniform.
        offset_range: a query's intensity offset relative to the guide scene's 0.5-99.5 percentile range.

    Returns:
        The :class:`ScenePair`.

    Raises:
        ValueError: an argument out of range.
    """
    size, num_queries = int(size), int(num_queries)
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}.")
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
    lo, hi = float(diameter_range[0]), float(diameter_range[-1])
    if not 0.0 < lo <= hi <= 0.9:
        raise ValueError(f"diameter_range must satisfy 0 < lo <= hi <= 0.9, got {tuple(diameter_range)}.")
    if family is not None and family not in PAIR_FAMILIES:
        raise ValueError(f"family must be one of {PAIR_FAMILIES}, got {family!r}.")
    rng = np.random.default_rng(seed)
    family = family or str(rng.choice(PAIR_FAMILIES, p=SHAPE_WEIGHTS / SHAPE_WEIGHTS.sum()))
    modality = (modality or ("CT", "MR")[int(rng.integers(2))]).upper()
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}.")
    sections = None
    for _ in range(30):
        sections = _object_sections(rng, family, num_queries)
        if sections is not None:
            break
    if sections is None:  # a family whose random draws keep missing the template grid (vanishingly rare)
        raise RuntimeError(f"no {family} object of >= {_MIN_SECTION} pixels in 30 draws (seed {seed}).")
    guide_section, query_sections = sections

    unit = 1.0 if modality == "MR" else 100.0
    sign = 1.0 if rng.random() < 0.5 else -1.0
    contrast = loguniform(rng, 0.15, 0.6) * unit * (2.0 if modality == "CT" else 1.0)
    texture_amplitude = rng.uniform(0.0, 0.35) * contrast
    texture = smooth_noise(rng, (*_TEMPLATE[:2], 1), (1.0, 1.0, 1.0), rng.uniform(1.5, 8.0))[0, :, :, 0]
    unit_scale = 1.0 if (modality == "CT" or rng.random() < 0.3) else rng.uniform(200.0, 4000.0)

    images, masks, placements = [], [], []
    reference_range = 1.0
    for index, section in enumerate([guide_section, *query_sections]):
        background = _background(rng, size, modality)
        _distractors(rng, background, contrast)
        alpha, warped, (row, col, scale, angle) = _place(rng, section, texture, size, (lo, hi), float(max_elastic))
        mask = alpha > 0.5
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
        local = float(background[ring].mean()) if ring.any() else float(background.mean())
        target = local + sign * contrast * rng.uniform(0.8, 1.25)
        if modality == "MR":
            target = max(target, 0.02)
        value = target + texture_amplitude * warped
        if rng.random() < 0.4:  # blurred edge
            alpha = ndimage.gaussian_filter(alpha, rng.uniform(0.5, 1.5))
        image = background + alpha * (value - background)
        if rng.random() < 0.3:  # a smoother acquisition
            image = ndimage.gaussian_filter(image, rng.uniform(0.4, 1.0))
        if modality == "CT":
            image = image + np.float32(loguniform(rng, 2.0, 40.0)) * rng.standard_normal(image.shape, dtype=np.float32)
        else:
            sigma = np.float32(loguniform(rng, 0.004, 0.05))
            noise = rng.standard_normal((2, *image.shape), dtype=np.float32) * sigma
            image = np.sqrt((np.maximum(image, 0.0) + noise[0]) ** 2 + noise[1] ** 2)
        image = image * np.float32(unit_scale)
        if index == 0:
            gain, offset = 1.0, 0.0
            low, high = np.percentile(image, (0.5, 99.5))
            reference_range = float(max(high - low, 1e-6))
        else:
            gain = loguniform(rng, float(gain_range[0]), float(gain_range[-1]))
            offset = rng.uniform(-offset_range, offset_range) * reference_range
        images.append((image * np.float32(gain) + np.float32(offset)).astype(np.float32))
        masks.append(mask)
        placements.append((row, col, scale, angle, gain, offset))
    return ScenePair(
        guide_image=images[0],
        guide_mask=masks[0],
        query_images=np.stack(images[1:]),
        query_masks=np.stack(masks[1:]),
        family=family,
        modality=modality,
        placements=np.asarray(placements, dtype=np.float64),
    )
