"""The bundle's evaluation section with ``--eval_interactive_steps``: the simulated user of interactive refinement."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from pam_monai.data.synthetic import write_synthetic_datalist

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = f"['{ROOT}/bundle/configs/train.json','{ROOT}/bundle/configs/evaluate.json']"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def test_interactive_steps_run_the_simulated_user_with_the_walker_beside_it(tmp_path: Path) -> None:
    write_synthetic_datalist(tmp_path / "data", 2, shape=(40, 40, 32), seed=5, num_validation=1)
    command = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", CONFIGS,
        "--bundle_root", str(ROOT / "bundle"), "--dataset_dir", str(tmp_path / "data"),
        "--eval_interactive_steps", "2", "--eval_label_values", "[1]", "--eval_baseline", "true",
        "--eval_output_dir", str(tmp_path / "eval"),
    ]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    with open(tmp_path / "eval" / "interactive.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # one object (label 1 of the validation volume), axis 2: each method's corrections and fixed protocol
    assert [(r["method"], r["protocol"]) for r in rows] == [
        ("PAM", "corrections"), ("PAM", "fixed"), ("Random walker", "corrections"), ("Random walker", "fixed"),
    ]  # fmt: skip
    for row in rows:
        dice = [float(v) for v in row["dice"].split()]
        assert len(dice) == (1 if row["protocol"] == "fixed" else len(row["slices"].split())) <= 3
        assert all(0.0 <= d <= 1.0 for d in dice)
    pam = [float(v) for v in rows[0]["dice"].split()]
    assert len(pam) == 2 and pam[0] > 0.5  # the largest slice, then one correction
    table = (tmp_path / "eval" / "interactive.md").read_text()
    assert "| method | objects | DSC 1 | DSC 2 | DSC fixed 3 | s / correction |" in table
    assert table in process.stdout  # the run prints the table
    assert not (tmp_path / "eval" / "per_object.csv").exists()  # the per-object evaluation did not run
