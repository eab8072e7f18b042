"""What every ``python -m pam_monai.cli.<name>`` front end shares: bad input as one line and exit status 2.

The library raises a ``ValueError`` (every :class:`~pam_monai.errors.InputError` is one) or an ``OSError`` naming the
offending file or setting; a front end prints it as ``<prog>: error: <message>`` on one line and exits with 2, as
``pam-monai`` and argparse do. Anything else keeps its traceback, as a bug to report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["run_command"]


def run_command(prog: str, command: Callable[[], str]) -> int:
    """Run ``command`` and print the text it returns.

    Args:
        prog: the command's name, the prefix of its error line (e.g. ``"python -m pam_monai.cli.atlas"``).
        command: does the work and returns what goes to standard output.

    Returns:
        0 when ``command`` succeeded; 2 after printing ``<prog>: error: <message>`` to standard error when it raised
        an ``OSError`` or ``ValueError``, or an error that MONAI or ignite wrapped around an
        :class:`~pam_monai.errors.InputError`.
    """
    try:
        text = command()
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
    except Exception as error:
        from pam_monai.workflows.errors import input_error_message  # MONAI's wrappers: only on the way out

        message = input_error_message(error)
        if message is None:
            raise
    else:
        print(text)
        return 0
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
