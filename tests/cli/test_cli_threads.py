"""``--threads``: the CPU threads the networks use while a command runs (default: the available cores)."""

from __future__ import annotations

import pytest
import torch

from pam_monai.cli import main as cli
from pam_monai.predictor import PAMPredictor


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stop ``segment`` right where it would load the networks, noting the thread count then."""
    counts: list[int] = []

    def stop(*args: object, **kwargs: object) -> None:
        counts.append(torch.get_num_threads())
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(PAMPredictor, "from_checkpoints", stop)
    return counts


def _segment(*extra: str) -> list[str]:
    return ["segment", "image.nii.gz", "--box", "1,1,5,5", "--slice", "0", "-o", "seg.nii.gz", *extra]


@pytest.mark.parametrize("extra,expected", [((), cli.available_cores()), (("--threads", "1"), 1)])
def test_threads_apply_during_the_command_and_are_restored(seen: list[int], extra: tuple[str, ...], expected: int):
    before = torch.get_num_threads()
    assert cli.main(_segment(*extra)) == 1
    assert seen == [expected]
    assert torch.get_num_threads() == before


def test_threads_must_be_positive(seen: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(_segment("--threads", "0")) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert seen == []


def test_every_network_command_has_the_option() -> None:
    for command in (
        ["propagate-2d", "--guides", "g", "--images", "i", "-o", "o"],
        ["propagate-large", "x.tif", "--guides", "g", "-o", "o"],
    ):
        assert cli._parser().parse_args([*command, "--threads", "3"]).threads == 3
        assert cli._parser().parse_args(command).threads is None
