"""``python -m pam_monai.cli.diagnostics``: the per-offset table, and bad requests as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam_monai.cli.diagnostics import PROG, main


def test_measures_generated_volumes_with_the_default_weights(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    output = tmp_path / "profile.json"
    assert main(["--synthetic", "1", "--axes", "2", "--max-offset", "3", "--output", str(output)]) == 0
    table = capsys.readouterr().out.splitlines()
    columns = "distance (slices) | n | PropMask DSC | PropMask sens | PropMask prec | copied guide DSC | gain"
    assert table[0] == f"| {columns} |"
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert [row.split(" | ")[0] for row in table[2:]] == ["| 0", "| 1", "| 2", "| 3"]
    saved = json.loads(output.read_text())
    assert [row["distance"] for row in saved["summary"]] == [0, 1, 2, 3]
    assert all(0.0 <= r[k] <= 1.0 for r in saved["records"] for k in ("network_dsc", "network_precision"))


def test_measures_the_validation_structures(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    output = tmp_path / "profile.json"
    assert main(["--validation", "--axes", "2", "--max-offset", "1", "--output", str(output)]) == 0
    saved = json.loads(output.read_text())
    from pam_monai.evaluation.candidate import VALIDATION_STRUCTURES

    identity = [r for r in saved["records"] if r["offset"] == 0]
    assert sorted({r["label"] for r in identity}) == list(range(1, len(VALIDATION_STRUCTURES) + 1))
    assert all(r["copy_dsc"] == 1.0 for r in identity)


def test_reports_a_missing_checkpoint_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["--synthetic", "1", "--checkpoint", str(tmp_path / "missing.pt")])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith(f"{PROG}: error:") and len(error.strip().splitlines()) == 1
    assert "missing.pt" in error


@pytest.mark.parametrize(
    ("flags", "message"), [(["--max-offset", "0"], "max_offset"), (["--dataset-dir", "/nonexistent"], "not found")]
)
def test_rejects_bad_requests_in_one_line(tmp_path: Path, capsys, flags: list[str], message: str) -> None:  # noqa: ANN001
    output = tmp_path / "profile.json"
    source = [] if "--dataset-dir" in flags else ["--synthetic", "1"]
    assert main([*source, *flags, "--output", str(output)]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith(f"{PROG}: error:") and message in error and len(error.splitlines()) == 1
    assert captured.out == "" and not list(tmp_path.iterdir())  # no table, nothing written


def test_reports_an_unwritable_output_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    output = blocker / "profile.json"
    assert main(["--synthetic", "1", "--axes", "2", "--max-offset", "2", "--output", str(output)]) == 2
    assert capsys.readouterr().err.startswith(f"{PROG}: error:") and sorted(p.name for p in tmp_path.iterdir()) == [
        "file"
    ]


def test_usage_errors_exit_with_2(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as stopped:
        main(["--synthetic", "1", "--dataset-dir", "runs/atlas"])  # one source only
    assert stopped.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
