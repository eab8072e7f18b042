"""The simulated user (:mod:`pam_monai.evaluation.interactive`) on every object of a set of volumes, with its table.

What the bundle's evaluation section runs with ``--eval_interactive_steps N``: for every object (label value) of
every volume and every axis, the largest true slice first and then the worst slice at each step, up to ``N``
annotated slices (each new slice a correction through the predictor's ``refine``), and the fixed three-slice
protocol; optionally the random walker seeded on the same slices beside it. Writes ``interactive.csv`` (one row per
object, method and protocol) and ``interactive.md`` (mean DSC after 1..N slices and with the fixed 3 slices).
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pam_monai.data.io import write_atomic
from pam_monai.evaluation.interactive import (
    InteractionTrace,
    PromptSegmenter,
    random_walker_slices,
    run_fixed,
    simulate_corrections,
)

__all__ = ["InteractiveEvaluation", "interactive_table"]

PAM, WALKER = "PAM", "Random walker"
FIELDS = ("volume", "label", "name", "axis", "method", "protocol", "slices", "dice", "seconds")


def interactive_table(rows: Sequence[Mapping[str, Any]], steps: int) -> str:
    """Markdown: per method, the objects, mean DSC after 1..``steps`` annotated slices (a user who stopped early
    keeps the last), the fixed 3-slice protocol's mean DSC and the mean seconds per correction."""
    header = ["method", "objects", *[f"DSC {n}" for n in range(1, steps + 1)], "DSC fixed 3", "s / correction"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(row["method"] for row in rows):
        own = [row for row in rows if row["method"] == method]
        traces = [[float(v) for v in str(r["dice"]).split()] for r in own if r["protocol"] == "corrections"]
        fixed = [float(r["dice"]) for r in own if r["protocol"] == "fixed"]
        seconds = [float(v) for r in own if r["protocol"] == "corrections" for v in str(r["seconds"]).split()[1:]]
        means = [
            np.mean([t[min(n, len(t)) - 1] for t in traces]) if traces else float("nan") for n in range(1, steps + 1)
        ]
        cells = [method, str(len(traces) or len(fixed)), *[f"{m:.3f}" for m in means]]
        cells += [f"{np.mean(fixed):.3f}" if fixed else "-", f"{np.mean(seconds):.2f}" if seconds else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class InteractiveEvaluation:
    """Run the simulated user on every object of ``volumes`` and write its tables.

    Args:
        predictor: a :class:`~pam_monai.predictor.PAMPredictor` (``set_image``, ``segment``, ``refine``).
        volumes: volume dicts with ``image`` and ``label``, each ``(1, X, Y, Z)`` (MetaTensors: their affine gives
            the spacing), e.g. the evaluation section's cached volumes.
        steps: annotated slices per object (the largest slice, then ``steps - 1`` corrections).
        output_dir: where ``interactive.csv`` and ``interactive.md`` go.
        axes: the slices' normals.
        label_values: objects to evaluate (default: every label value of each volume).
        label_names: names for the CSV.
        fixed: also run the fixed protocol (the largest slice and the slices half-way to each end).
        baseline: also run the random walker seeded on the same slices.
    """

    def __init__(
        self,
        *,
        predictor: Any,
        volumes: Sequence[Mapping[str, Any]] | Any,
        steps: int,
        output_dir: str | os.PathLike,
        axes: Sequence[int] = (2,),
        label_values: Sequence[int] | None = None,
        label_names: Mapping[int | str, str] | None = None,
        fixed: bool = True,
        baseline: bool = False,
    ) -> None:
        self.predictor = predictor
        self.volumes = volumes
        self.steps = int(steps)
        self.output_dir = Path(output_dir)
        self.axes = [int(a) for a in axes]
        self.label_values = None if label_values is None else {int(v) for v in label_values}
        self.names = {int(k): str(v) for k, v in (label_names or {}).items()}
        self.fixed = bool(fixed)
        self.baseline = bool(baseline)
        self.rows: list[dict[str, Any]] = []

    def _row(self, info: dict[str, Any], method: str, protocol: str, trace: InteractionTrace) -> dict[str, Any]:
        return {**info, "method": method, "protocol": protocol, "slices": " ".join(map(str, trace.slices)),
                "dice": " ".join(f"{d:.4f}" for d in trace.dice),
                "seconds": " ".join(f"{s:.3f}" for s in trace.seconds)}  # fmt: skip

    def _evaluate(self, info: dict[str, Any], pixels: np.ndarray, truth: np.ndarray, axis: int) -> None:
        methods: dict[str, Any] = {
            PAM: PromptSegmenter(predictor=self.predictor, shape=truth.shape, axis=axis, refine=True)
        }
        if self.baseline:
            methods[WALKER] = functools.partial(random_walker_slices, pixels, axis=axis)
        for method, segment in methods.items():
            trace = simulate_corrections(segment, truth, axis, self.steps)
            self.rows.append(self._row(info, method, "corrections", trace))
            if self.fixed:
                self.rows.append(self._row(info, method, "fixed", run_fixed(segment, truth, axis)))

    def run(self) -> str:
        """Evaluate every object; write ``interactive.csv`` and ``interactive.md`` and return the table.

        Raises:
            ValueError: ``steps`` below 1.
        """
        if self.steps < 1:
            raise ValueError(f"interactive steps must be at least 1, got {self.steps}.")
        self.rows = []
        for v in range(len(self.volumes)):
            volume = self.volumes[v]
            image = volume["image"]
            label = np.asarray(volume["label"]).reshape(np.shape(image)[-3:])
            pixels = np.asarray(image, dtype=np.float32).reshape(label.shape)
            source = getattr(image, "meta", {}).get("filename_or_obj", f"volume_{v}")
            values = sorted(set(np.unique(label).astype(int).tolist()) - {0})
            self.predictor.set_image(image)
            for value in [x for x in values if self.label_values is None or x in self.label_values]:
                for axis in self.axes:
                    info = {"volume": str(source), "label": value, "name": self.names.get(value, str(value))}
                    self._evaluate({**info, "axis": axis}, pixels, label == value, axis)
        self.output_dir.mkdir(parents=True, exist_ok=True)

        def write_csv(path: Path) -> None:
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, FIELDS)
                writer.writeheader()
                writer.writerows(self.rows)

        write_atomic(self.output_dir / "interactive.csv", write_csv)
        table = interactive_table(self.rows, self.steps)
        write_atomic(self.output_dir / "interactive.md", lambda path: path.write_text(table))
        return table
