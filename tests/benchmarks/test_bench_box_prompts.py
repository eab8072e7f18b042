"""The box-prompt benchmark: a reduced run end to end on one validation structure (its numbers are not checked: a
benchmark), with the 3D propagation of ``--propagate``."""

from __future__ import annotations

import pytest


@pytest.fixture()
def bench_box_prompts(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_box_prompts")


def test_variants_and_propagation_side_by_side(bench_box_prompts, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "tables" / "box.md"
    args = ["--sets", "validation", "--structures", "3rd-Ventricle", "--axes", "2", "--variants", "before", "default",
            "--propagate", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert bench_box_prompts.main(args) == 0
    text = out.read_text()
    assert capsys.readouterr().out == text + "\n"  # the file holds what was printed
    assert text.startswith("Command: `python benchmarks/bench_box_prompts.py --sets validation")
    assert "### validation: 3D DSC of the propagation from the box prompt (1 prompts)" in text
    assert "### validation (1 prompts, settings chosen here): first-mask DSC per axis" in text
    assert "| axis | before | default |" in text
    # The per-prompt row: the object, its axis, a box of at least one pixel and two DSCs in [0, 1].
    row = next(line for line in text.splitlines() if line.startswith("| 3rd-Ventricle | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    width, height = (int(n) for n in cells[2].split("x"))
    assert width >= 1 and height >= 1
    assert 0.0 <= float(cells[4]) <= 1.0 and 0.0 <= float(cells[7]) <= 1.0


def test_an_unknown_variant_is_refused(bench_box_prompts) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as stop:
        bench_box_prompts.main(["--variants", "context_9"])
    assert stop.value.code == 2
