"""Interactive refinement with a simulated user: mean DSC after 1, 2, 3 and 5 annotated slices.

The protocol of :mod:`pam_monai.evaluation.interactive`: start from the true mask of the object's largest slice
along the axis; at each step add the true mask of the slice with the largest error (false positives + false
negatives, among the slices that show the object) as a correction; each method drives its own user (the slice it
gets wrong most). Also the fixed protocol: the largest slice plus the slices half-way to each end, given at once.

Side by side in one run, on the same objects and slices:

* **PAM** with the bundle's default weights and the default inferer settings (random walker opinion 0.7, beta
  2000, the shape prior between two drawn guides of ``pam_monai.inferers.interpolation`` with weight 0.7), once
  per fusion rule of the slices between two guides (``--fusions``);
* **Fill between slices**: 3D Slicer's tool, ITK's ``MorphologicalContourInterpolator`` (no extrapolation beyond
  the outermost slices);
* **Random walker**: the one-slice baseline's seeds on every annotated slice (beta 130, walked on a grid coarsened
  to at most ``--walker-max-voxels`` voxels).

Sets: ``atlas`` (17 subcortical structures of the MNI152 template, Desikan-Killiany labels, axes ``--axes``) and
``generated`` (objects of ``--volumes`` generated volumes, along ``--generated-axes``). Seconds per correction: the
mean wall time of a call that adds one slice; on a 100-slice object (``--timing-span``: the winding tube of
``bench_propagation`` in a 512 x 512 x 140 volume) also measured on its own, median and max over the corrections of
the simulated user up to ``--timing-slices`` slices. Every object's trace goes to ``--csv`` as it finishes;
``--summarise CSV [CSV ...]`` rebuilds the tables from such files (of runs cut short, or of runs that split the
work).

Usage::

    python benchmarks/bench_interactive.py --threads 2 --csv interactive.csv --out benchmarks/results/interactive.md
    python benchmarks/bench_interactive.py --structures 2 --axes 2 --volumes 1   # reduced
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads, tube_volume  # noqa: E402

from pam_monai.evaluation.interactive import (  # noqa: E402
    PromptSegmenter,
    fill_between_slices,
    random_walker_slices,
    run_fixed,
    simulate_corrections,
)

STEPS = (1, 2, 3, 5)
FIELDS = ("set", "object", "axis", "method", "protocol", "slices", "dice", "seconds")
FILL, WALKER = "Fill between slices", "Random walker"


def atlas_cases(structures: Sequence[str], axes: Sequence[int]) -> Iterator[tuple]:
    """``(name, image, truth, spacing)`` per structure and axis (axes outermost, so a cut run covers all
    structures on the first axis)."""
    from pam_monai.data.atlas import load_template_and_labels

    template, labels, names = load_template_and_labels()
    image = np.asarray(template.dataobj, dtype=np.float32)
    spacing = tuple(float(s) for s in template.header.get_zooms()[:3])
    for axis in axes:
        for name in structures:
            yield name, axis, image, labels == names[name], spacing


def generated_cases(volumes: int, shape: Sequence[int], axes: Sequence[int]) -> Iterator[tuple]:
    from pam_monai.data.synthetic import generate_volume

    for seed in range(volumes):
        volume = generate_volume(seed, shape)
        for axis in axes:
            for value in range(1, volume.num_objects + 1):
                yield f"volume{seed}-object{value}", axis, volume.image, volume.label == value, volume.spacing


def pam_predictors(fusions: Sequence[str]) -> dict[str, Any]:
    """One predictor per fusion rule, default weights and the CLI's default inferer settings."""
    from pam_monai.cli.main import WALKER_BETA, WALKER_WEIGHT, WALKER_WEIGHT_BOX
    from pam_monai.predictor import PAMPredictor

    settings = {"walker_weight": WALKER_WEIGHT, "walker_weight_box": WALKER_WEIGHT_BOX, "walker_beta": WALKER_BETA}
    return {f"PAM ({f})": PAMPredictor.from_checkpoints(fusion=f, **settings) for f in fusions}


def methods_for(
    predictors: dict[str, Any], image: np.ndarray, spacing: Sequence[float], axis: int, args: argparse.Namespace
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name, predictor in predictors.items():
        predictor.set_image(image, spacing=spacing)
        refine = args.refine and callable(getattr(predictor, "refine", None))
        methods[name] = PromptSegmenter(predictor=predictor, shape=image.shape, axis=axis, refine=refine)
    methods[FILL] = functools.partial(fill_between_slices, shape=image.shape, axis=axis, threads=args.threads)
    methods[WALKER] = functools.partial(
        random_walker_slices, image, axis=axis, max_voxels=args.walker_max_voxels or None
    )
    return {m: f for m, f in methods.items() if m in args.methods or m.startswith("PAM") and "PAM" in args.methods}


def _row(set_name: str, name: str, axis: int, method: str, protocol: str, trace: Any) -> dict[str, Any]:
    return {
        "set": set_name, "object": name, "axis": axis, "method": method, "protocol": protocol,
        "slices": " ".join(map(str, trace.slices)), "dice": " ".join(f"{d:.4f}" for d in trace.dice),
        "seconds": " ".join(f"{s:.3f}" for s in trace.seconds),
    }  # fmt: skip


def run_set(
    set_name: str,
    cases: Iterator[tuple],
    predictors: dict[str, Any],
    args: argparse.Namespace,
    protocol: str,
    writer: Any,
) -> list[dict[str, Any]]:
    """One protocol (``corrections`` or ``fixed``) on every case of a set, every method; rows also to ``writer``."""
    rows = []
    for name, axis, image, truth, spacing in cases:
        for method, segment in methods_for(predictors, image, spacing, axis, args).items():
            if protocol == "fixed":
                trace = run_fixed(segment, truth, axis)
            else:
                trace = simulate_corrections(segment, truth, axis, max_slices=max(args.steps))
            rows.append(_row(set_name, name, axis, method, protocol, trace))
            if writer is not None:
                writer.writerow(rows[-1])
            dice = " ".join(f"{d:.3f}" for d in trace.dice)
            print(f"# {set_name} {name} axis {axis} {method} {protocol}: DSC {dice}", file=sys.stderr, flush=True)
    return rows


def correction_timing(predictors: dict[str, Any], span: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds of each correction per method on a ``span``-slice object (512 x 512 x span+40): the simulated user
    from the largest slice up to ``--timing-slices`` slices (each call after the first adds one slice)."""
    image, truth, _ = tube_volume(span)
    spacing = (0.8, 0.8, 1.0)
    out = {}
    for method, segment in methods_for(predictors, image.astype(np.float32), spacing, 2, args).items():
        trace = simulate_corrections(segment, truth, 2, max_slices=args.timing_slices)
        if len(trace.seconds) > 1:
            out[method] = trace.correction_seconds
    return out


def summarise(rows: Sequence[dict[str, Any]], steps: Sequence[int] = STEPS) -> dict[str, dict[str, dict[str, Any]]]:
    """Per set and method: objects, mean DSC after each step count, fixed-protocol DSC, seconds per correction."""
    grouped: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        dice = [float(v) for v in str(row["dice"]).split()]
        seconds = [float(v) for v in str(row["seconds"]).split()]
        group = grouped[(row["set"], row["method"])]
        if row["protocol"] == "fixed":
            group["fixed"].append(dice[0])
        else:
            for n in steps:
                group[n].append(dice[min(n, len(dice)) - 1])
            group["corrections_s"] += seconds[1:]
            group["first_s"].append(seconds[0])
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (set_name, method), group in grouped.items():
        summary[set_name][method] = {
            "objects": f"{len(group[steps[0]])} / {len(group['fixed'])}",
            **{n: float(np.mean(group[n])) for n in steps if group[n]},
            "fixed": float(np.mean(group["fixed"])) if group["fixed"] else float("nan"),
            "first_s": float(np.mean(group["first_s"])) if group["first_s"] else float("nan"),
            "correction_s": float(np.mean(group["corrections_s"])) if group["corrections_s"] else float("nan"),
        }
    return summary


def report(
    summary: dict[str, dict[str, dict[str, Any]]],
    steps: Sequence[int],
    timing: dict[str, list[float]],
    span: int = 100,
) -> str:
    lines = []
    headers = ["set", "method", "objects (corrections / fixed)", *[f"DSC {n} slice{'s' * (n > 1)}" for n in steps],
               "DSC fixed 3", "s first", "s / correction"]  # fmt: skip
    table = []
    for set_name, methods in summary.items():
        for method, s in methods.items():
            table.append([set_name, method, s["objects"], *[f"{s[n]:.3f}" if n in s else "-" for n in steps],
                          f"{s['fixed']:.3f}", f"{s['first_s']:.2f}", f"{s['correction_s']:.2f}"])  # fmt: skip
    lines.append(markdown_table(headers, table))
    for set_name, methods in summary.items():
        pam = {m: s for m, s in methods.items() if m.startswith("PAM")}
        baselines = [s["fixed"] for m, s in methods.items() if not m.startswith("PAM") and not np.isnan(s["fixed"])]
        for method, s in pam.items():
            if np.isnan(s["fixed"]):
                continue
            means = [s[n] for n in steps if n in s]
            monotone = ("yes" if all(b >= a for a, b in zip(means, means[1:])) else "NO") if means else "not measured"
            margin = s["fixed"] - max(baselines) if baselines else float("nan")
            lines.append(
                f"- {set_name}, {method}: fixed 3 slices {s['fixed']:.3f} (target >= 0.85: "
                f"{'met' if s['fixed'] >= 0.85 else 'NOT met'}), {margin:+.3f} against the better baseline (target "
                f">= +0.10: {'met' if margin >= 0.10 else 'NOT met'}); the mean never drops with an extra slice: "
                f"{monotone}"
            )
    if timing:
        per_method = ", ".join(f"{m} {np.median(s):.2f} / {np.max(s):.2f} s" for m, s in timing.items())
        lines.append(f"- seconds per correction on a {span}-slice object (median / max): {per_method}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from pam_monai.data.atlas import SUBCORTICAL_STRUCTURES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["atlas", "generated"], choices=["atlas", "generated"])
    parser.add_argument("--structures", type=int, default=len(SUBCORTICAL_STRUCTURES), help="first N structures")
    parser.add_argument("--skip-structures", type=int, default=0, help="leave out the first N of those (split a run)")
    parser.add_argument("--axes", type=int, nargs="+", default=[2, 0, 1], help="atlas axes, in this order")
    parser.add_argument("--volumes", type=int, default=4, help="generated volumes (seeds 0..N-1)")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64], help="generated volumes' shape")
    parser.add_argument("--generated-axes", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="annotated slice counts reported")
    parser.add_argument("--fusions", nargs="+", default=["distance", "mean"], help="PAM fusion rules")
    parser.add_argument("--methods", nargs="+", default=["PAM", FILL, WALKER], choices=["PAM", FILL, WALKER])
    parser.add_argument(
        "--protocols", nargs="+", default=["corrections", "fixed"], choices=["corrections", "fixed"], help="in order"
    )
    parser.add_argument("--no-refine", dest="refine", action="store_false", help="segment anew at every step")
    parser.add_argument("--walker-max-voxels", type=int, default=262_144, help="0: walk at full resolution")
    parser.add_argument("--timing-span", type=int, default=100, help="object for the timed corrections; 0: skip")
    parser.add_argument("--timing-slices", type=int, default=6, help="annotated slices on it (corrections + 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="write every object's traces here as they finish")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="CSV", help="only summarise CSVs of earlier runs")
    args = parser.parse_args(argv)
    steps = sorted(set(args.steps))
    if steps[0] < 1:
        parser.error("--steps must be positive")
    if args.summarise:
        rows = []
        for path in args.summarise:
            with open(path, newline="") as handle:
                rows += list(csv.DictReader(handle))
        text = report(summarise(rows, steps), steps, {})
        print(text)
        return {"rows": rows, "summary": summarise(rows, steps), "text": text}

    threads = set_threads(args.threads)
    predictors = pam_predictors(args.fusions) if "PAM" in args.methods else {}
    # line-buffered: every finished object is on disk, even if the run is stopped
    handle = open(args.csv, "w", newline="", buffering=1) if args.csv else None  # noqa: SIM115
    writer = csv.DictWriter(handle, FIELDS) if handle else None
    if writer is not None:
        writer.writeheader()
    rows: list[dict[str, Any]] = []
    try:
        # the ITK wrappers load lazily (tens of seconds): not inside the first timed call
        fill_between_slices({0: np.ones((4, 4), bool), 2: np.ones((4, 4), bool)}, (3, 4, 4), 0, threads=threads)
        timing = correction_timing(predictors, args.timing_span, args) if args.timing_span else {}
        if timing:
            print(f"# one correction on a {args.timing_span}-slice object: {timing}", file=sys.stderr, flush=True)
        for protocol in args.protocols:
            for set_name in args.sets:
                if set_name == "atlas":
                    cases = atlas_cases(SUBCORTICAL_STRUCTURES[args.skip_structures : args.structures], args.axes)
                else:
                    cases = generated_cases(args.volumes, args.shape, args.generated_axes)
                rows += run_set(set_name, cases, predictors, args, protocol, writer)
                if handle is not None:
                    handle.flush()
    finally:
        if handle is not None:
            handle.close()
    summary = summarise(rows, steps)
    text = (
        f"# {machine_line(threads)}\n# simulated user, corrections up to {max(steps)} slices and the fixed 3-slice "
        f"protocol; default weights, default inferer settings\n\n{report(summary, steps, timing, args.timing_span)}"
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return {"rows": rows, "summary": summary, "timing": timing, "text": text}


if __name__ == "__main__":
    main()
