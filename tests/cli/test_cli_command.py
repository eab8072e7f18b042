"""What the ``python -m pam_monai.cli.<name>`` front ends share: one-line errors with exit status 2, ``-m`` entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pam_monai.cli.command import run_command
from pam_monai.errors import DatalistError

ROOT = Path(__file__).resolve().parents[2]


def test_success_prints_the_text_and_returns_0(capsys) -> None:  # noqa: ANN001
    assert run_command("prog", lambda: "| a |\n| b |") == 0
    assert capsys.readouterr() == ("| a |\n| b |\n", "")


def fail(error: BaseException) -> str:
    raise error


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (FileNotFoundError("runs/x/model.pt does not exist."), "prog: error: runs/x/model.pt does not exist.\n"),
        (ValueError("axes must be\namong 0, 1, 2"), "prog: error: axes must be among 0, 1, 2\n"),
        (DatalistError("data.json: no 'validation' list."), "prog: error: data.json: no 'validation' list.\n"),
    ],
)
def test_bad_input_is_one_line_with_exit_status_2(capsys, error: Exception, line: str) -> None:  # noqa: ANN001
    assert run_command("prog", lambda: fail(error)) == 2
    assert capsys.readouterr() == ("", line)


def test_input_errors_wrapped_by_monai_are_found(capsys) -> None:  # noqa: ANN001
    def wrapped() -> str:
        try:
            raise DatalistError("x.nii.gz: cannot read the label.")
        except DatalistError as error:
            raise RuntimeError("applying transform <monai.transforms.Compose object>") from error

    assert run_command("prog", wrapped) == 2
    assert capsys.readouterr().err == "prog: error: x.nii.gz: cannot read the label.\n"


def test_other_errors_keep_their_traceback(capsys) -> None:  # noqa: ANN001
    with pytest.raises(KeyError):
        run_command("prog", lambda: fail(KeyError("a bug")))
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        run_command("prog", lambda: fail(RuntimeError("CUDA out of memory")))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", ["atlas", "atlas_agreement", "candidate", "diagnostics"])
def test_each_front_end_runs_with_python_m(name: str) -> None:
    """``--help`` answers at once: the library is imported after parsing (``synthetic``: test_cli_synthetic.py)."""
    done = subprocess.run(
        [sys.executable, "-m", f"pam_monai.cli.{name}", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m pam_monai.cli.{name}")
