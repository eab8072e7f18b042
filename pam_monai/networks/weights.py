"""The default PropMask and Box2Mask weights, found without the repository around the package.

The weights ship inside the package (``pam_monai/networks/models``, package data of the wheel; in a source
checkout these are links to the bundle's ``bundle/models``). ``PAM_MONAI_MODELS`` names another folder holding a
``model.pt`` (PropMask) and a ``box2mask.pt`` (Box2Mask), e.g. the ``models`` folder of a downloaded bundle.
"""

from __future__ import annotations

import os
from pathlib import Path

from pam_monai.errors import CheckpointError

__all__ = ["DEFAULT_BOX2MASK", "DEFAULT_PROPMASK", "MODELS_ENV", "PACKAGED_MODELS", "default_checkpoints"]

MODELS_ENV = "PAM_MONAI_MODELS"
"""Environment variable naming a folder with ``model.pt`` and ``box2mask.pt`` to use instead of the packaged ones."""
PACKAGED_MODELS = Path(__file__).resolve().parent / "models"
"""The weights that ship with the package."""
DEFAULT_PROPMASK = PACKAGED_MODELS / "model.pt"
"""The packaged PropMask weights (the bundle's ``models/model.pt``)."""
DEFAULT_BOX2MASK = PACKAGED_MODELS / "box2mask.pt"
"""The packaged Box2Mask weights (the bundle's ``models/box2mask.pt``)."""


def default_checkpoints() -> tuple[Path, Path]:
    """The default PropMask and Box2Mask weights: ``$PAM_MONAI_MODELS`` if set, else the packaged ones.

    Returns:
        ``(propmask_path, box2mask_path)``.

    Raises:
        CheckpointError: no PropMask weights in that folder (one line naming the folder and the way out).
    """
    override = os.environ.get(MODELS_ENV, "").strip()
    folder = Path(override).expanduser() if override else PACKAGED_MODELS
    propmask, box2mask = folder / DEFAULT_PROPMASK.name, folder / DEFAULT_BOX2MASK.name
    if not propmask.is_file():
        where = f"{MODELS_ENV}={override}" if override else "this install of pam-monai"
        raise CheckpointError(
            f"no default PropMask weights ({propmask} from {where}): set {MODELS_ENV} to a folder holding the "
            "bundle's model.pt and box2mask.pt, or pass --checkpoint with PropMask weights "
            "(see `pam-monai convert-checkpoint` for the authors' files)."
        )
    return propmask, box2mask
