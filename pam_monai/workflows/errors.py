"""Finding the bad input behind wrapped exceptions, for every front end that drives MONAI's engines and configs.

MONAI's config parser, its transforms and ignite wrap what went wrong in ``RuntimeError`` after ``RuntimeError``.
:func:`input_error_message` walks that chain to the :class:`~pam_monai.errors.InputError` (or the image that
``LoadImaged`` could not read) behind it, so a front end can print one line instead of a traceback: the bundle's
``scripts.errors`` (``python -m monai.bundle run``), the MONAI Deploy operator, and :func:`exit_on_error` for Python
callers. Anything else is not input: it keeps its traceback, as a bug to report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pam_monai.errors import InputError, TrainingSetupError

__all__ = ["INPUT_ERRORS", "TrainingSetupError", "causes", "exit_on_error", "input_error_message", "one_line", "stop"]

logger = logging.getLogger(__name__)

INPUT_ERRORS: tuple[type[Exception], ...] = (InputError,)
"""Errors that name a problem with the user's files, prompts or settings (every subclass of ``InputError``)."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions behind it, each once: its ``__cause__``, else its ``__context__``, and so on
    (MONAI's config parser and transforms wrap what an expression or a transform raised)."""
    link: BaseException | None = error
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def one_line(error: BaseException) -> str:
    """The message of ``error`` with its whitespace runs (newlines included) made single spaces."""
    return " ".join(str(error).split()) or type(error).__name__


def input_error_message(error: BaseException) -> str | None:
    """The one-line message of the bad input behind ``error``, or ``None`` when ``error`` is not about input.

    Follows :func:`causes` to the first of :data:`INPUT_ERRORS`; an image that MONAI's ``LoadImaged`` could not
    read (missing, corrupt, unknown format) counts too.
    """
    for link in causes(error):
        if isinstance(link, INPUT_ERRORS):
            return one_line(link)
        # MONAI's transforms wrap what went wrong in "applying transform <...LoadImaged object at ...>".
        if isinstance(link, RuntimeError) and link.__cause__ is not None and ".LoadImage" in str(link).split(">")[0]:
            return "cannot read the image: " + one_line(link.__cause__)
    return None


def stop(message: str, error: BaseException) -> SystemExit:
    """A ``SystemExit`` whose text is ``error: <message>`` (what the process prints), caused by ``error``."""
    logger.error(message)
    exit_ = SystemExit(f"error: {message}")
    exit_.__cause__ = error
    return exit_


def exit_on_error(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; turn bad input into ``SystemExit`` with its one-line message.

    ``SystemExit`` passes through MONAI's config parser and ignite, so a process stops with exit status 1 and
    prints just ``error: <message>`` (the message names the offending file or setting).
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:
        message = input_error_message(error)
        if message is None:
            raise
        raise stop(message, error) from error
