"""The bad input behind wrapped exceptions is found and stops a caller in one line; a bug keeps its traceback."""

from __future__ import annotations

import pytest
from monai.data import Dataset
from monai.transforms import Compose, LoadImaged

from pam_monai.errors import (
    CheckpointError,
    DatalistError,
    ImageError,
    InferenceSettingError,
    PromptError,
    TrainingSetupError,
)
from pam_monai.workflows.errors import causes, exit_on_error, input_error_message


def _wrapped(error: Exception) -> RuntimeError:
    """``error`` behind two layers of wrapping, as MONAI's parser and transforms raise it."""
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("applying transform <pam_monai.transforms.prompt.LoadPromptd object>") from inner
    except RuntimeError as middle:
        try:
            raise RuntimeError("Failed to evaluate ConfigExpression") from middle
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize(
    "error", [PromptError, ImageError, CheckpointError, DatalistError, InferenceSettingError, TrainingSetupError]
)
def test_input_errors_are_found_behind_wrappers(error: type[Exception]) -> None:
    assert input_error_message(_wrapped(error("the prompt\n  lies outside"))) == "the prompt lies outside"


@pytest.mark.parametrize("name,reason", [("missing.nii.gz", "No such file"), ("bad.nii.gz", "Cannot work out")])
def test_an_image_monai_cannot_read_is_input(tmp_path, name: str, reason: str) -> None:  # noqa: ANN001
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b not an image")
    dataset = Dataset([{"image": str(tmp_path / name)}], Compose([LoadImaged("image")]))
    with pytest.raises(RuntimeError) as raised:
        dataset[0]
    message = input_error_message(raised.value)
    assert message is not None and message.startswith(f"cannot read the image: {reason}") and name in message


@pytest.mark.parametrize("error", [ZeroDivisionError("bug"), RuntimeError("applying transform <x.Spacingd>")])
def test_other_errors_are_not_input(error: Exception) -> None:
    assert input_error_message(_wrapped(error)) is None
    with pytest.raises(type(error)):
        exit_on_error(lambda: (_ for _ in ()).throw(error))


def test_exit_on_error_passes_results_and_stops_on_input() -> None:
    assert exit_on_error(max, 2, 5) == 5
    with pytest.raises(SystemExit, match="^error: slice 3 is blank$"):
        exit_on_error(lambda: (_ for _ in ()).throw(PromptError("slice 3 is blank")))


def test_causes_follow_each_link_once() -> None:
    outer = _wrapped(PromptError("x"))
    chain = list(causes(outer))
    assert len(chain) == 3 and isinstance(chain[-1], PromptError)
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop
    assert len(list(causes(loop))) == 2
