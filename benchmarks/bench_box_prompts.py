"""Box prompts on real slices: Box2Mask's first mask from each object's tight box against the truth on the prompt
slice, for several Box2Mask inference settings side by side.

Sets (``pam_monai.evaluation.box_prompts``): **validation**, the ICBM 2009c template with the validation structures
(``pam_monai.evaluation.candidate.VALIDATION_STRUCTURES``; settings are chosen here), and **atlas**, the MNI152
template with the 17 atlas test structures (reported only). Each object is prompted on its largest-area slice along
each axis with the tight box of its true mask there; the default Box2Mask weights make the mask.

Variants are ``Box2Masker`` settings (:data:`VARIANTS`); ``before`` is the setting shipped before this benchmark,
``default`` whatever ``Box2Masker()`` is now.

``--propagate`` also runs the full 3D propagation from each box prompt (the default PropMask weights, the bundle's
inference settings ``pam_monai.evaluation.candidate.INFERENCE``) with the first and the last variant's Box2Masker,
and reports the 3D DSC against the object; ``--structures`` limits the objects (slow on a CPU).

Usage::

    python benchmarks/bench_box_prompts.py --threads 1 --out benchmarks/results/box_prompts.md
    python benchmarks/bench_box_prompts.py --sets validation --variants before context_1.5 flips
    python benchmarks/bench_box_prompts.py --sets atlas --variants before default --propagate --axes 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.evaluation.box_prompts import (  # noqa: E402
    atlas_objects,
    box_prompt_cases,
    evaluate_first_masks,
    summarise_first_masks,
)
from pam_monai.evaluation.candidate import INFERENCE, overlap_scores, validation_objects  # noqa: E402
from pam_monai.evaluation.objects import object_prompt  # noqa: E402
from pam_monai.inferers.box2masker import Box2Masker  # noqa: E402
from pam_monai.inferers.propagation import PropagationInferer  # noqa: E402
from pam_monai.networks.checkpoint import build_network_from_checkpoint  # noqa: E402
from pam_monai.networks.weights import default_checkpoints  # noqa: E402

BEFORE = {
    "context": 1.2, "min_crop": 0, "more_crops": (), "candidate_vote": "all", "flips": False, "threshold": 0.5,
}  # fmt: skip
"""The Box2Masker settings before this benchmark (context 1.2, the PAM paper's candidate pooling)."""

VARIANTS: dict[str, dict[str, Any]] = {
    "before": BEFORE,
    "default": {},
    "context_1.0": {**BEFORE, "context": 1.0},
    "context_1.35": {**BEFORE, "context": 1.35},
    "context_1.5": {**BEFORE, "context": 1.5},
    "context_2.0": {**BEFORE, "context": 2.0},
    "min_crop_32": {**BEFORE, "min_crop": 32},
    "threshold_0.4": {**BEFORE, "threshold": 0.4},
    "threshold_0.3": {**BEFORE, "threshold": 0.3},
    "flips": {**BEFORE, "flips": True},
    "box_vote": {**BEFORE, "candidate_vote": "box"},
    "box_vote_1.5": {**BEFORE, "candidate_vote": "box", "context": 1.5},
    "crops_1.2+1.2/32": {**BEFORE, "more_crops": ((1.2, 32),)},
    "crops_1.2+1.2/32_t0.4": {**BEFORE, "more_crops": ((1.2, 32),), "threshold": 0.4},
    "crops_3": {**BEFORE, "more_crops": ((1.35, 0), (1.2, 32))},
    "crops_3_t0.4": {**BEFORE, "more_crops": ((1.35, 0), (1.2, 32)), "threshold": 0.4},
    "crops_3_flips_t0.4": {**BEFORE, "more_crops": ((1.35, 0), (1.2, 32)), "flips": True, "threshold": 0.4},
}
"""Name -> ``Box2Masker`` keyword arguments ({} = its defaults)."""


def _cell(value: float) -> str:
    return f"{value:.3f}"


def propagate(objects: Any, variants: Sequence[str], axes: Sequence[int]) -> list[dict[str, Any]]:
    """3D DSC of the propagation from each object's box prompt, one row per (object, axis, variant)."""
    propmask_path, box2mask_path = default_checkpoints()
    propmask = build_network_from_checkpoint(propmask_path, kind="propmask").eval()
    box2mask = build_network_from_checkpoint(box2mask_path, kind="box2mask").eval()
    inferers = {v: PropagationInferer(**INFERENCE, box2mask_inferer=Box2Masker(**VARIANTS[v])) for v in variants}
    rows = []
    for _, image, masks in objects:
        spacing = [float(s) for s in np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(0))]
        for name, truth in masks.items():
            for axis in axes:
                prompt = object_prompt(truth, int(axis), "box")
                for variant, inferer in inferers.items():
                    start = time.perf_counter()
                    result = inferer.propagate(image, propmask, box2mask, spacing=spacing, **prompt)
                    scores = overlap_scores(np.asarray(result.labels.cpu()) > 0, truth)
                    rows.append({"object": name, "axis": int(axis), "variant": variant, **scores,
                                 "seconds": time.perf_counter() - start})  # fmt: skip
                    print(f"# 3D {name} axis {axis} {variant}: {scores['dsc']:.3f}", file=sys.stderr)
    return rows


def propagation_table(rows: Sequence[dict[str, Any]], variants: Sequence[str], axes: Sequence[int]) -> str:
    """Mean 3D DSC per axis and variant (and the mean seconds per propagation)."""

    def mean(variant: str, key: str = "dsc", axis: int | None = None) -> float:
        values = [r[key] for r in rows if r["variant"] == variant and axis in (None, r["axis"])]
        return float(np.mean(values)) if values else float("nan")

    table = [[a, *(_cell(mean(v, axis=a)) for v in variants)] for a in axes]
    table.append(["**all**", *(f"**{_cell(mean(v))}**" for v in variants)])
    table.append(["s / propagation", *(f"{mean(v, 'seconds'):.1f}" for v in variants)])
    return markdown_table(["axis", *variants], table)


def run(
    sets: Sequence[str],
    variants: Sequence[str],
    axes: Sequence[int],
    structures: Sequence[str] | None = None,
    run_propagation: bool = False,
) -> tuple[str, dict]:
    network = build_network_from_checkpoint(default_checkpoints()[1], kind="box2mask").eval()
    sources = {"validation": validation_objects, "atlas": atlas_objects}
    lines, results = [], {}
    for set_name in sets:
        if run_propagation:
            chosen = (variants[0], variants[-1])
            rows3d = propagate(sources[set_name](structures), chosen, axes)
            lines += [f"### {set_name}: 3D DSC of the propagation from the box prompt ({len(rows3d) // 2} prompts)", ""]
            lines += [propagation_table(rows3d, chosen, axes), ""]
            results[f"{set_name}_3d"] = rows3d
        cases = box_prompt_cases(sources[set_name](structures), axes)
        rows, seconds = {}, {}
        for name in variants:
            start = time.perf_counter()
            rows[name] = evaluate_first_masks(cases, Box2Masker(**VARIANTS[name]), network)
            seconds[name] = (time.perf_counter() - start) / max(len(cases), 1)
            print(f"# {set_name} {name}: {summarise_first_masks(rows[name])[0]['dsc']:.3f}", file=sys.stderr)
        results[set_name] = rows
        role = "settings chosen here" if set_name == "validation" else "test set, reported only"
        lines += [f"### {set_name} ({len(cases)} prompts, {role}): first-mask DSC per axis", ""]
        per_axis = {v: {r["axis"]: r["dsc"] for r in summarise_first_masks(rows[v], ("axis",))} for v in variants}
        overall = {v: summarise_first_masks(rows[v])[0] for v in variants}
        table = [[a, *(_cell(per_axis[v][a]) for v in variants)] for a in axes]
        table.append(["**all**", *(f"**{_cell(overall[v]['dsc'])}**" for v in variants)])
        lines += [markdown_table(["axis", *variants], table), ""]
        lines += [f"### {set_name}: means over all prompts", ""]
        keys = ("dsc", "sensitivity", "precision", "area_ratio", "edges_touched")
        table = [[v, *(_cell(overall[v][k]) for k in keys), f"{seconds[v]:.2f}"] for v in variants]
        lines += [markdown_table(["variant", *keys, "s / prompt"], table), ""]
        first, last = variants[0], variants[-1]
        lines += [f"### {set_name}: per prompt, {first} against {last}", ""]
        table = []
        for a, b in zip(rows[first], rows[last]):
            box = b["box"]
            table.append([
                a["object"], a["axis"], f"{box[2] - box[0] + 1}x{box[3] - box[1] + 1}", f"{a['box_fill']:.2f}",
                _cell(a["dsc"]), f"{a['area_ratio']:.2f}", int(a["edges_touched"]), _cell(b["dsc"]),
                f"{b['area_ratio']:.2f}", int(b["edges_touched"]),
            ])  # fmt: skip
        headers = ["object", "axis", "box", "true/box area", f"DSC {first}", "area ratio", "edges",
                   f"DSC {last}", "area ratio", "edges"]  # fmt: skip
        lines += [markdown_table(headers, table), ""]
    return "\n".join(lines), results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["validation", "atlas"], choices=["validation", "atlas"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--axes", nargs="+", type=int, default=[0, 1, 2], choices=[0, 1, 2])
    parser.add_argument("--structures", nargs="+", default=None, help="a subset of the set's structures")
    parser.add_argument("--propagate", action="store_true", help="also the 3D DSC from the first and last variant")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    with torch.inference_mode():
        text, _ = run(args.sets, args.variants, args.axes, args.structures, args.propagate)
    command = "python benchmarks/bench_box_prompts.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"Command: `{command}`\n\nMachine: {machine_line(threads)}\n\n{text}"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
