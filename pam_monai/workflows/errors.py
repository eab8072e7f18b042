"""One-line errors for bundle runs.

Bad input found while a bundle config is parsed, or while its engine runs, stops ``python -m monai.bundle run``
with ``error: <message>`` and a non-zero exit status, instead of the chain of ``RuntimeError`` wrappers that MONAI's
config parser, its transforms and ignite put around it. Anything else still raises with its traceback: that is a
bug to report, not input to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from ignite.engine import Engine, Events

from pam_monai.data.datalist import DatalistError
from pam_monai.data.io import ImageError
from pam_monai.errors import TrainingSetupError
from pam_monai.inferers.propagation import InferenceSettingError
from pam_monai.networks.checkpoint import CheckpointError
from pam_monai.prompts.core import PromptError

__all__ = [
    "INPUT_ERRORS",
    "StopOnInputError",
    "TrainingSetupError",
    "causes",
    "exit_on_error",
    "input_error_message",
]

logger = logging.getLogger(__name__)



INPUT_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    DatalistError,
    ImageError,
    InferenceSettingError,
    PromptError,
    TrainingSetupError,
)
"""Errors that name a problem with the user's files, prompts or settings."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions behind it, each once: its ``__cause__``, else its ``__context__``, and so on
    (MONAI's config parser and transforms wrap what an expression or a transform raised)."""
    link: BaseException | None = error
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def input_error_message(error: BaseException) -> str | None:
    """The one-line message of the bad input behind ``error``, or ``None`` when ``error`` is not about input.

    Follows :func:`causes` to the first of :data:`INPUT_ERRORS`; an image that MONAI's ``LoadImaged`` could not
    read (missing, corrupt, unknown format) counts too.
    """
    for link in causes(error):
        if isinstance(link, INPUT_ERRORS):
            return _one_line(link)
        # MONAI's transforms wrap what went wrong in "applying transform <...LoadImaged object at ...>".
        if isinstance(link, RuntimeError) and link.__cause__ is not None and ".LoadImage" in str(link).split(">")[0]:
            return "cannot read the image: " + _one_line(link.__cause__)
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _stop(message: str, error: BaseException) -> SystemExit:
    logger.error(message)
    stop = SystemExit(f"error: {message}")
    stop.__cause__ = error
    return stop


def exit_on_error(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; turn bad input into ``SystemExit`` with its one-line message (for bundle configs).

    ``SystemExit`` passes through MONAI's config parser, so ``python -m monai.bundle run`` stops with exit status 1
    and prints just ``error: <message>`` (the message names the offending file or setting).
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:
        message = input_error_message(error)
        if message is None:
            raise
        raise _stop(message, error) from error


class StopOnInputError:
    """Ignite handler: bad input met while the engine runs (an unreadable image, a prompt outside it) stops the run
    with a one-line ``error: <message>``; other exceptions are raised again unchanged.

    Put it first in an engine's handlers: ignite calls ``EXCEPTION_RAISED`` handlers in order, and a later
    ``StatsHandler`` would log the whole traceback first.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        if isinstance(error, SystemExit):  # ignite hands our own stop back once more on its way out
            raise error
        message = input_error_message(error)
        if message is None:
            raise error
        raise _stop(message, error) from error
