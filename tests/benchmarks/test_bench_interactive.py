"""The interactive benchmark runs end to end in its reduced mode (its numbers are not checked: a benchmark)."""

from __future__ import annotations

import csv

import pytest


@pytest.fixture()
def bench_interactive(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_interactive")


def test_generated_volumes_all_methods_side_by_side(bench_interactive, tmp_path, capsys) -> None:  # noqa: ANN001
    traces, table = tmp_path / "traces.csv", tmp_path / "interactive.md"
    args = ["--sets", "generated", "--volumes", "1", "--shape", "48", "48", "32", "--steps", "1", "2",
            "--fusions", "distance", "mean", "--timing-span", "0", "--threads", "1",
            "--csv", str(traces), "--out", str(table)]  # fmt: skip
    out = bench_interactive.main(args)
    methods = ["PAM (distance)", "PAM (mean)", "Fill between slices", "Random walker"]
    assert sorted(out["summary"]["generated"]) == sorted(methods)
    objects = {r["object"] for r in out["rows"]}
    assert len(objects) >= 2
    # every object: every method, both protocols; corrections stop at 2 slices, the fixed protocol gives up to 3
    assert len(out["rows"]) == len(objects) * len(methods) * 2
    for row in out["rows"]:
        count = len(row["slices"].split())
        assert count == len(row["dice"].split()) or row["protocol"] == "fixed"
        assert 1 <= count <= (2 if row["protocol"] == "corrections" else 3)
        assert all(0.0 <= float(d) <= 1.0 for d in row["dice"].split())
    for summary in out["summary"]["generated"].values():
        assert summary["objects"] == f"{len(objects)} / {len(objects)}"
    printed = capsys.readouterr().out
    assert "| generated | PAM (distance) |" in printed and "DSC 2 slices" in printed and "DSC fixed 3" in printed
    assert table.read_text().strip() == printed.strip()
    # the CSV written as the run went summarises to the same table
    with open(traces, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(out["rows"])
    again = bench_interactive.main(["--summarise", str(traces), "--steps", "1", "2"])
    assert again["summary"] == out["summary"]


def test_reduced_atlas_run_with_the_baselines(bench_interactive) -> None:  # noqa: ANN001
    args = ["--sets", "atlas", "--structures", "2", "--axes", "2", "--steps", "1", "2", "3",
            "--methods", "Fill between slices", "Random walker", "--timing-span", "0", "--threads", "1"]  # fmt: skip
    out = bench_interactive.main(args)
    assert {r["object"] for r in out["rows"]} == {"Left-Lateral-Ventricle", "Right-Lateral-Ventricle"}
    fill = out["summary"]["atlas"]["Fill between slices"]
    # Fill between slices does not extrapolate: from one slice it is that slice; more slices only add to it
    assert fill[1] < fill[2] <= fill[3]
    assert out["summary"]["atlas"]["Random walker"][1] > fill[1]
