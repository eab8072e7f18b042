"""The cross-image benchmark's cases (``benchmarks/bench_cross_image.py``): ICBM 2009c guides with MNI152 queries,
and generated scenes, each case ``guides -> one query`` with the query's true mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pam_monai.data.atlas import ICBM2009C_TEMPLATE, MNI152_TEMPLATE, load_template_and_labels

FAMILIES = ("ellipsoid", "blob", "lobes", "bitten", "shell", "torus")
GENERATED_TEST_SEED = 960_000
"""First seed of the benchmark's generated scenes (reported only)."""
GENERATED_VALIDATION_SEED = 970_000
"""First seed of the validation split's generated scenes (settings are chosen on these)."""


@dataclass
class Case:
    """Guides ``(image, mask)`` (2D float32 / bool) and one query image with its true mask."""

    set: str
    name: str
    guides: list[tuple[np.ndarray, np.ndarray]]
    query: np.ndarray
    truth: np.ndarray


# -------------------------------------------------------------------------------------------------------------
# the atlas set
# -------------------------------------------------------------------------------------------------------------


def _ras(image: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image and labels in RAS voxel order, with the matching affine."""
    import nibabel as nib

    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt("RAS")
    )
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    return (
        nib.orientations.apply_orientation(image, transform),
        nib.orientations.apply_orientation(labels, transform),
        new_affine,
    )


def load_template(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    template, labels, names = load_template_and_labels(name)
    image, labels, affine = _ras(np.asarray(template.dataobj, dtype=np.float32), labels, template.affine)
    return image, labels, affine, names


def world_to_index(index: int, axis: int, source: np.ndarray, target: np.ndarray) -> int:
    """The slice of ``target``'s grid at the world position of slice ``index`` of ``source``'s (axis-aligned)."""
    voxel = np.zeros(4)
    voxel[axis], voxel[3] = index, 1.0
    return int(round(float((np.linalg.inv(target) @ source @ voxel)[axis])))


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.ascontiguousarray(np.take(volume, index, axis=axis))


def label_values(names: dict[str, int], structure: str) -> list[int]:
    """The atlas label values of ``structure`` (``"Corpus-Callosum"``: its five ``CC_*`` parts)."""
    if structure == "Corpus-Callosum":
        return [v for n, v in names.items() if n.startswith("CC_")]
    return [names[structure]]


def atlas_cases(structures: Sequence[str], axes: Sequence[int], guides: Sequence[int], offset: int) -> list[Case]:
    """Guides from the ICBM 2009c template, queries from MNI152, per structure, axis and guide count."""
    icbm, icbm_labels, icbm_affine, names = load_template(ICBM2009C_TEMPLATE)
    mni, mni_labels, mni_affine, _ = load_template(MNI152_TEMPLATE)
    cases = []
    for axis in axes:
        for structure in structures:
            values = label_values(names, structure)
            inside = np.isin(icbm_labels, values)
            areas = inside.sum(axis=tuple(a for a in range(3) if a != axis))
            largest = int(np.argmax(areas))
            query_index = world_to_index(largest, axis, icbm_affine, mni_affine)
            truth = np.isin(_slice(mni_labels, axis, query_index), values)
            if not truth.any():
                continue
            for count in guides:
                picked = [largest]
                if count == 3:
                    picked = [k for k in (largest - offset, largest, largest + offset) if 0 <= k < len(areas)]
                    picked = [k for k in picked if areas[k] > 0]
                pairs = [(_slice(icbm, axis, k), _slice(inside, axis, k)) for k in picked]
                cases.append(
                    Case(
                        f"atlas axis {axis}, {count} guide{'s' if count > 1 else ''}",
                        f"{structure} axis {axis}",
                        pairs,
                        _slice(mni, axis, query_index),
                        truth,
                    )
                )
    return cases


# -------------------------------------------------------------------------------------------------------------
# the generated set
# -------------------------------------------------------------------------------------------------------------


def generated_scene(
    kind: str, seed: int, modality: str, size: int = 128, depth: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """One object of shape family ``kind`` painted on a generated background: its largest-area slice.

    ``modality`` ``"CT"`` (Hounsfield units) or ``"MR"`` (scaled to a random maximum of 200..4000, as the generator
    does).

    Returns:
        ``(image float32 (size, size), mask bool (size, size))``.
    """
    from pam_monai.data.synthetic.grid import Grid
    from pam_monai.data.synthetic.shapes import SHAPE_FUNCS
    from pam_monai.data.synthetic.textures import draw_background, paint_objects

    rng = np.random.default_rng(seed)
    grid = Grid((size, size, depth), (1.0, 1.0, 1.0))
    for _ in range(20):
        image = draw_background(rng, grid, modality, None)
        centre = np.array([rng.uniform(0.25, 0.75) * size, rng.uniform(0.25, 0.75) * size, depth / 2])
        result = SHAPE_FUNCS[kind](rng, grid, centre, rng.uniform(0.08, 0.2) * size, 2.0)
        if result is None or result[1].sum() < 200:
            continue
        region, mask = result
        label = np.zeros(grid.shape, dtype=np.int32)
        label[region][mask] = 1
        paint_objects(rng, grid, image, label, [kind], modality, 0.7, 0.0)
        k = int(np.argmax((label == 1).sum(axis=(0, 1))))
        plane = image[:, :, k]
        plane = plane + rng.normal(0.0, rng.uniform(0.02, 0.1) * float(plane.std()) + 1e-6, plane.shape)
        if modality == "MR":
            plane = np.maximum(plane, 0.0) * rng.uniform(200.0, 4000.0) / max(float(np.percentile(plane, 99.5)), 1e-3)
        return plane.astype(np.float32), label[:, :, k] == 1
    raise RuntimeError(f"no {kind} object fits a {size} x {size} x {depth} grid for seed {seed}")


def independent_cases(families: Sequence[str], pairs: int, guides: Sequence[int], size: int) -> list[Case]:
    """The earlier generated set (before 2026-12-07): per family and pair, guide scene(s) and a query scene of the
    same family and modality (CT for even pairs, MR for odd ones), all with different seeds, each drawing its
    object's and background's intensities independently (:func:`generated_scene`)."""
    cases = []
    for f, kind in enumerate(families):
        for p in range(pairs):
            base, modality = 1000 * f + 10 * p, ("CT", "MR")[p % 2]
            query, truth = generated_scene(kind, base, modality, size)
            scenes = [generated_scene(kind, base + 1 + g, modality, size) for g in range(max(guides))]
            for count in guides:
                chosen = scenes[:count]
                cases.append(
                    Case(
                        f"generated, independent looks, {count} guide{'s' if count > 1 else ''}",
                        f"{kind} {p}",
                        chosen,
                        query,
                        truth,
                    )
                )
    return cases


def generated_cases(
    families: Sequence[str], pairs: int, guides: Sequence[int], size: int, seed: int = GENERATED_TEST_SEED
) -> list[Case]:
    """Per family and pair: scenes of one object (:func:`pam_monai.data.synthetic.pairs.generate_scene_pair`, seed
    ``seed + 100 * family index + pair``, CT for even pairs and MR for odd ones), its guide scene and the first
    two of its query scenes as guides, its third query scene as the query."""
    from pam_monai.data.synthetic.pairs import generate_scene_pair

    cases = []
    for f, kind in enumerate(families):
        for p in range(pairs):
            pair = generate_scene_pair(seed + 100 * f + p, size, 3, family=kind, modality=("CT", "MR")[p % 2])
            scenes = [(pair.guide_image, pair.guide_mask)]
            scenes += [(pair.query_images[k], pair.query_masks[k]) for k in range(2)]
            for count in guides:
                cases.append(
                    Case(
                        f"generated, {count} guide{'s' if count > 1 else ''}",
                        f"{kind} {p}",
                        scenes[:count],
                        pair.query_images[2],
                        pair.query_masks[2],
                    )
                )
    return cases
