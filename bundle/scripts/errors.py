"""One-line exits for bad input in bundle runs.

Bad input found while a config expression is resolved, or while an engine runs, stops ``python -m monai.bundle
run`` with ``error: <message>`` on stderr and exit status 1 instead of the chain of wrappers that MONAI's config
parser, its transforms and ignite put around it. Anything else keeps its traceback: that is a bug to report.
"""

from __future__ import annotations

import sys
from types import TracebackType

from ignite.engine import Engine, Events

from pam_monai.workflows.errors import exit_on_error, input_error_message, stop

__all__ = ["StopOnInputError", "exit_on_error", "one_line_errors"]


def _report(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    message = input_error_message(error)
    if message is None:
        sys.__excepthook__(kind, error, traceback)
    else:
        print(f"error: {message}", file=sys.stderr)


def one_line_errors() -> bool:
    """From now on, an exception that ends the process with bad input behind it (see
    :func:`pam_monai.workflows.errors.input_error_message`) prints ``error: <message>`` and no traceback.

    The exit status stays 1. Put it first in a config's ``run`` list: the expressions after it (and ``finalize``)
    may then build networks, read checkpoints and datalists without wrapping each call.

    Returns:
        ``True`` (a value for the config's ``run`` list).
    """
    sys.excepthook = _report
    return True


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
        raise stop(message, error) from error
