"""An ignite handler that scores every propagated object and writes the per-object CSV and summary tables."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.utils import affine_to_spacing

from pam_monai.data.io import write_atomic
from pam_monai.evaluation.baseline import random_walker_baseline
from pam_monai.evaluation.metrics import irregularity, object_metrics

__all__ = ["ObjectMetricsReport", "summarise"]

METRICS = ("dsc", "sensitivity", "precision", "specificity", "hd95", "asd", "nsd")


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarise(rows: Sequence[dict[str, Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Mean of every metric per group (e.g. variant and axis), with the object count."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in group_by)].append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        entry = dict(zip(group_by, key))
        entry["objects"] = len(members)
        for name in [m for m in members[0] if m in METRICS or m.startswith("baseline_") or m == "seconds"]:
            entry[name] = _mean([float(m[name]) for m in members])
        out.append(entry)
    return out


def _markdown(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no objects)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


class ObjectMetricsReport:
    """Attach to a ``SupervisedEvaluator`` running :class:`~pam_monai.evaluation.objects.ObjectTaskDataset`.

    Per object it records DSC, sensitivity, precision, specificity, HD95, ASD, NSD (mm), the object's irregularity
    and the seconds of its propagation, optionally next to a random-walker baseline from the same prompt; at the end it
    writes ``per_object.csv``, ``summary.md`` and ``summary.json`` to ``output_dir`` and puts ``mean_dsc`` into
    ``engine.state.metrics``.
    """

    def __init__(self, output_dir: str | os.PathLike, baseline: bool = False, nsd_tolerance_mm: float = 2.0) -> None:
        self.output_dir = Path(output_dir)
        self.baseline = bool(baseline)
        self.nsd_tolerance_mm = nsd_tolerance_mm
        self.rows: list[dict[str, Any]] = []
        self._irregularity: dict[tuple[str, int], dict[str, float]] = {}
        self._started = 0.0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Any) -> None:
        self._started = time.perf_counter()

    def _score(self, engine: Any) -> None:
        seconds = time.perf_counter() - self._started
        batch = engine.state.batch
        info = dict(batch["info"])
        image = batch["image"]
        spacing = [float(s) for s in affine_to_spacing(image.affine, r=3)]
        truth = np.asarray(batch["truth"]).astype(bool)
        prediction = np.asarray(engine.state.output["pred"].cpu()).reshape(truth.shape) > 0
        row: dict[str, Any] = {**info, **object_metrics(prediction, truth, spacing, self.nsd_tolerance_mm)}
        row["seconds"] = seconds
        key = (info["volume"], info["label"])
        if key not in self._irregularity:
            self._irregularity[key] = irregularity(truth, spacing)
        row.update(self._irregularity[key])
        if self.baseline:
            plane = np.take(truth, info["prompt_slice"], axis=info["axis"])
            if info["variant"] == "box":  # the baseline gets the same information: the filled box
                rows, cols = np.nonzero(plane)
                plane = np.zeros_like(plane)
                plane[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
            volume = np.asarray(image.cpu()).reshape(truth.shape)
            walked = random_walker_baseline(volume, plane, info["axis"], info["prompt_slice"])
            for name, value in object_metrics(walked, truth, spacing, self.nsd_tolerance_mm).items():
                row[f"baseline_{name}"] = value
        self.rows.append(row)

    def _write(self, engine: Any) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self.rows:
            return
        fields = list(self.rows[0])

        def write_csv(temporary: Path) -> None:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(self.rows)

        write_atomic(self.output_dir / "per_object.csv", write_csv)
        by_variant = summarise(self.rows, ("variant", "axis"))
        by_object = summarise(self.rows, ("name", "variant"))
        text = "## Mean per prompt variant and axis\n\n" + _markdown(by_variant)
        text += "\n## Mean per object and prompt variant (over axes and sweeps)\n\n" + _markdown(by_object)
        write_atomic(self.output_dir / "summary.md", lambda t: t.write_text(text))
        summary = {"by_variant_and_axis": by_variant, "by_object": by_object, "objects": len(self.rows)}
        write_atomic(self.output_dir / "summary.json", lambda t: t.write_text(json.dumps(summary, indent=2)))
        engine.state.metrics["mean_dsc"] = _mean([r["dsc"] for r in self.rows])
