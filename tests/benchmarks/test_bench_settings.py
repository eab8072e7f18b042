"""The settings benchmark: its scores, and a reduced run end to end (its numbers are not checked: a benchmark)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture()
def bench_settings(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_settings")


def test_scores_count_overlap_and_extent(bench_settings) -> None:  # noqa: ANN001
    truth = np.zeros((10, 10, 10), bool)
    truth[2:6, 2:6, 2:8] = True  # 6 slices along axis 2
    found = np.zeros_like(truth)
    found[2:6, 2:6, 2:5] = True  # its first 3 slices: half the object, nothing else
    dsc, sensitivity, precision, extent = bench_settings.scores(found, truth, axis=2)
    assert (sensitivity, precision, extent) == (0.5, 1.0, 0.5) and dsc == pytest.approx(2 / 3)


def test_two_variants_side_by_side_on_a_generated_volume(bench_settings, capsys) -> None:  # noqa: ANN001
    variants = '{"no outline": {"outline_weight": 0}, "default": {}}'
    args = ["--set", "generated", "--volumes", "1", "--shape", "48", "48", "32", "--axes", "2", "--variants", variants]
    rows = bench_settings.main(args)["rows"]
    assert [(r[0], r[1]) for r in rows] == [
        ("no outline", "one slice"), ("no outline", "fixed 3"), ("default", "one slice"), ("default", "fixed 3")
    ]  # fmt: skip
    assert all(int(r[2]) >= 2 and 0.0 <= float(r[3]) <= 1.0 for r in rows)
    assert "| variant | prompt | objects | DSC | sens | prec | extent |" in capsys.readouterr().out
