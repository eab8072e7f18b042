"""``python -m pam_monai.cli.candidate``: bad requests stop before any network runs, as one line with exit status 2.

The whole comparison runs end to end in ``tests/test_train_on_device.py`` (``scripts/train_on_device.sh``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pam_monai.cli.candidate import PROG, main, parse_axes

REPO = Path(__file__).resolve().parents[2]


def test_axes_accept_commas_and_spaces() -> None:
    assert parse_axes("0,1,2") == [0, 1, 2] and parse_axes("2 0") == [2, 0]
    for text in ("", "3", "0,-1"):
        with pytest.raises(ValueError, match="axes must be among 0, 1, 2"):
            parse_axes(text)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--axes", "0,4"], "axes must be among 0, 1, 2, got '0,4'."),
        (["--structures", "Brain-Stem"], "structure 'Brain-Stem' is in the atlas test set"),
        (["--structures", "Nose"], "structure 'Nose' is no validation one"),
        ([], "model.pt does not exist."),
        (["--cross-pairs", "-1"], "--cross-pairs must be >= 0, got -1."),
    ],
)
def test_bad_requests_are_one_line_and_write_nothing(tmp_path: Path, capsys, flags: list[str], message: str) -> None:  # noqa: ANN001
    out, shipped = tmp_path / "out", REPO / "bundle" / "models"
    candidate = shipped if flags else tmp_path / "none"
    code = main(["--candidate-dir", str(candidate), "--shipped-dir", str(shipped), "--out-dir", str(out),
                 "--device", "cpu", *flags])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and captured.err.startswith(f"{PROG}: error: ")
    assert message in captured.err and len(captured.err.splitlines()) == 1
    assert not out.exists()


def test_the_shipped_weights_default_to_the_package_ones(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Without ``--shipped-dir`` the shipped side is the default weights (``$PAM_MONAI_MODELS`` here), wherever the
    command runs: only the missing candidate file is reported."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("model.pt", "box2mask.pt"):
        (shipped / name).write_bytes((REPO / "bundle" / "models" / name).read_bytes())
    monkeypatch.setenv("PAM_MONAI_MODELS", str(shipped))
    monkeypatch.chdir(tmp_path)
    code = main(["--candidate-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'none' / 'model.pt'} does not exist." in err
    monkeypatch.delenv("PAM_MONAI_MODELS")
    code = main(["--candidate-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2 and "none/model.pt does not exist." in capsys.readouterr().err
