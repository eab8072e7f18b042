"""Inference settings side by side on the validation structures (or held-out generated volumes): mean DSC,
sensitivity, precision and slice extent per variant, one-slice prompt and three true slices.

Each variant is a set of :class:`~pam_monai.inferers.propagator.Propagator` keyword arguments on top of the bundle's
default inference settings (:data:`~pam_monai.evaluation.candidate.INFERENCE`), with the default weights. The
one-slice prompt is the true mask of the object's largest slice; "fixed 3" adds the slices half-way to each end
(:func:`~pam_monai.evaluation.interactive.fixed_slices`). Extent: the slices the result covers along the axis over
those the object covers (below 1: propagation stopped early). Settings are chosen here, never on the atlas test set.

Usage::

    python benchmarks/bench_settings.py --variants '{"before": {"outline_weight": 0}, "after": {}}'
    python benchmarks/bench_settings.py --set generated --variants '{"before": {"outline_weight": 0}, "after": {}}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.evaluation.candidate import INFERENCE, generated_objects, validation_objects  # noqa: E402
from pam_monai.evaluation.interactive import fixed_slices, largest_slice, slice_prompt, true_slices  # noqa: E402

PROTOCOLS = ("one slice", "fixed 3")


def scores(found: np.ndarray, truth: np.ndarray, axis: int) -> tuple[float, float, float, float]:
    """DSC, sensitivity, precision and slice extent ratio of a boolean result."""
    tp = float((found & truth).sum())
    planes = tuple(a for a in range(3) if a != axis)
    extent = float(found.any(axis=planes).sum()) / float(truth.any(axis=planes).sum())
    return 2 * tp / (found.sum() + truth.sum()), tp / truth.sum(), tp / max(found.sum(), 1), extent


def objects(which: str, volumes: int, shape: Sequence[int] = (96, 96, 64)):  # noqa: ANN201
    """``(name, image array, spacing, {object: mask})`` of the chosen set."""
    source = validation_objects() if which == "validation" else generated_objects(volumes, shape=shape)
    for name, image, masks in source:
        spacing = tuple(float(s) for s in np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(0)))
        yield name, np.asarray(image), spacing, masks


def main(argv: Sequence[str] | None = None) -> dict[str, list[list[str]]]:
    """Run the variants; print the table and return its rows (``{"rows": [[variant, prompt, objects, DSC, ...]]}``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", required=True, help="JSON: name -> Propagator keyword arguments")
    parser.add_argument("--set", choices=["validation", "generated"], default="validation")
    parser.add_argument("--volumes", type=int, default=2, help="generated volumes (held-out seeds)")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64], help="generated volumes' shape")
    parser.add_argument("--axes", type=int, nargs="+", default=[2, 0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    from pam_monai.predictor import PAMPredictor

    variants = json.loads(args.variants)
    predictors = {name: PAMPredictor.from_checkpoints(**{**INFERENCE, **kw}) for name, kw in variants.items()}
    rows: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    started = time.time()
    for _, image, spacing, masks in objects(args.set, args.volumes, args.shape):
        for predictor in predictors.values():
            predictor.set_image(image, spacing=spacing)
        for structure, truth in masks.items():
            for axis in args.axes:
                for protocol in PROTOCOLS:
                    index = [largest_slice(truth, axis)] if protocol == "one slice" else fixed_slices(truth, axis)
                    prompt = slice_prompt(truth.shape, true_slices(truth, axis, index), axis)
                    for name, predictor in predictors.items():
                        found = predictor.segment(mask_prompt=prompt, axis=axis).labels.numpy() > 0
                        rows.setdefault((name, protocol), []).append(scores(found, truth, axis))
            print(f"# {structure} done ({time.time() - started:.0f} s)", flush=True)
    table = [
        [name, protocol, str(len(rows[name, protocol])), *(f"{v:.3f}" for v in np.mean(rows[name, protocol], axis=0))]
        for name in variants
        for protocol in PROTOCOLS
    ]
    print(f"\n# {machine_line(threads)}; set {args.set}, axes {args.axes}; variants {args.variants}\n")
    print(markdown_table(["variant", "prompt", "objects", "DSC", "sens", "prec", "extent"], table))
    return {"rows": table}


if __name__ == "__main__":
    main()
