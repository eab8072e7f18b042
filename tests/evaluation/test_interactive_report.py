"""InteractiveEvaluation: the simulated user on every object of a set of volumes, and its table."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import OraclePropMask, object_volume
from monai.data import MetaTensor

from pam_monai.evaluation.interactive_report import InteractiveEvaluation, interactive_table
from pam_monai.predictor import PAMPredictor


def test_every_object_and_axis_gets_its_traces_and_the_table_their_means(tmp_path) -> None:  # noqa: ANN001
    label = np.zeros((32, 32, 24), dtype=np.int16)
    label[8:20, 8:22, 4:18] = 1
    label[22:28, 20:28, 10:20] = 2
    image = MetaTensor(torch.from_numpy(object_volume(label))[None], affine=torch.eye(4))
    predictor = PAMPredictor(propmask=OraclePropMask())
    predictor.inferer.thickness_mm = 4
    run = InteractiveEvaluation(
        predictor=predictor, volumes=[{"image": image, "label": torch.from_numpy(label)[None]}], steps=3,
        output_dir=tmp_path, axes=(2, 0), label_values=[2], label_names={2: "box"}, baseline=True,
    )  # fmt: skip
    table = run.run()
    with open(tmp_path / "interactive.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["name"], r["axis"], r["method"], r["protocol"]) for r in rows] == [
        ("box", str(axis), method, protocol)
        for axis in (2, 0)
        for method in ("PAM", "Random walker")
        for protocol in ("corrections", "fixed")
    ]
    assert (tmp_path / "interactive.md").read_text() == table
    assert table == interactive_table(rows, 3)
    pam = [r for r in rows if r["method"] == "PAM" and r["protocol"] == "corrections"]
    assert all(float(r["dice"].split()[0]) > 0.8 for r in pam)  # the oracle finds the box from one slice


def test_the_table_keeps_the_last_dsc_of_a_user_who_stopped_early() -> None:
    rows = [
        {"method": "m", "protocol": "corrections", "dice": "0.5 0.7", "seconds": "1 2"},
        {"method": "m", "protocol": "corrections", "dice": "0.9", "seconds": "1"},
        {"method": "m", "protocol": "fixed", "dice": "0.8", "seconds": "3"},
    ]
    line = interactive_table(rows, 3).splitlines()[-1]
    assert line == "| m | 2 | 0.700 | 0.800 | 0.800 | 0.800 | 2.00 |"


def test_steps_must_be_positive(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="at least 1"):
        InteractiveEvaluation(predictor=None, volumes=[], steps=0, output_dir=tmp_path).run()
