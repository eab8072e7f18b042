"""Every error pam-monai raises on purpose, at the bottom of the import graph.

Each is a one-line message naming what is wrong with the input; front ends (the CLI, the bundle, MONAI Label and
MONAI Deploy) print it as it is and exit non-zero (4xx for the server). Anything else is a bug to report.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DatalistError",
    "ImageError",
    "ImageReadError",
    "InferenceSettingError",
    "InputError",
    "NoObjectError",
    "PromptError",
    "Propagate2DError",
    "SessionError",
    "TrainingSetupError",
    "UsageError",
]


class InputError(ValueError):
    """Input that pam-monai cannot use; the message names the problem on one line."""


class ImageError(InputError):
    """An image pam-monai cannot use: unreadable, not 3D, or with non-finite intensities."""


class ImageReadError(ImageError):
    """An image that cannot be read."""


class PromptError(InputError):
    """A prompt that does not fit the image."""


class SessionError(InputError):
    """An interactive session asked for something it cannot do (e.g. undo with nothing to undo)."""


class CheckpointError(InputError):
    """A checkpoint file or state dict cannot be read or does not fit the network (one-line message)."""


class InferenceSettingError(InputError):
    """An inferer setting is out of range (raised when the inferer is built, before any image is read)."""


class DatalistError(InputError):
    """A datalist entry that cannot be used for training (one-line message naming the file)."""


class TrainingSetupError(InputError):
    """A training configuration that cannot run (one-line message)."""


class Propagate2DError(InputError):
    """Guides or targets that cannot be used (the message names the offending input on one line)."""


class UsageError(InputError):
    """A command-line argument that cannot be used."""


class NoObjectError(RuntimeError):
    """The networks found nothing for a prompt (no file is written)."""
