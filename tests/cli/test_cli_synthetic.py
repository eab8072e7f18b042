"""``python -m pam_monai.cli.synthetic``: generated volumes and their ``dataset.json`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pam_monai.cli.synthetic import PROG, main

ROOT = Path(__file__).resolve().parents[2]


def test_writes_the_volumes_and_prints_the_datalist(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "cli"
    assert main([str(out), "--num-volumes", "2", "--shape", "32", "32", "16", "--seed", "4", "--no-progress"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] + meta["numValidation"] == 2 and meta["seed"] == 4 and meta["shape"] == [32, 32, 16]
    assert capsys.readouterr().out == f"{out / 'dataset.json'}\n"
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 2


def test_module_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "mod"
    cmd = [sys.executable, "-m", "pam_monai.cli.synthetic", str(out), "--num-volumes", "1", "--shape", "24", "24"]
    cmd += ["12", "--seed", "1", "--num-validation", "0", "--modality", "MR"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert len(meta["training"]) == 1 and meta["validation"] == [] and meta["modality"] == {"0": "MR"}


def test_bad_counts_are_one_line_with_exit_status_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([str(tmp_path / "out"), "--num-volumes", "2", "--num-validation", "3", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"{PROG}: error: num_validation must be in [0, 2], got 3\n"
    assert main([str(tmp_path / "out"), "--num-volumes", "0"]) == 2
    assert capsys.readouterr().err == f"{PROG}: error: num_volumes must be >= 1, got 0\n"
