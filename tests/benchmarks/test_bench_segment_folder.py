"""The folder benchmark runs both modes end to end on real command lines (numbers not checked: not a timed test)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def bench_segment_folder(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_segment_folder")


def test_both_modes_give_the_same_labels_and_a_table(bench_segment_folder, capsys) -> None:  # noqa: ANN001
    results = bench_segment_folder.main(["--cases", "2", "--size", "128", "--span", "10", "--threads", "1"])
    assert results["identical"] and results["per_case_s"] > 0 and results["folder_s"] > 0
    table = capsys.readouterr().out
    assert "| one `segment` process per case | 2 |" in table and "| one `segment-folder` process | 2 |" in table
    assert "same label images in both modes: yes" in table
