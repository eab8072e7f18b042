"""Make MONAI Label 0.8.5 importable without torchvision.

``monailabel.tasks.infer.bundle`` imports ``monailabel.transform.post``, whose first lines import
``torchvision.utils.make_grid`` and ``save_image``; nothing on PAM's path calls them (they serve a debugging
transform that dumps 2D image grids). torchvision's wheels do not work beside the CPU build of torch that this
project pins, so the MONAI Label environment has no torchvision.

:func:`import_monailabel_without_torchvision` imports that one module with a stand-in ``torchvision.utils``
registered only for the duration of the import, then removes the stand-in again: afterwards
``import torchvision`` still fails as it should (MONAI's ``optional_import`` keeps treating torchvision as
absent), and the two names inside ``monailabel.transform.post`` raise a clear error if anything ever calls them.
When torchvision is installed and works, nothing is replaced.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["import_monailabel_without_torchvision"]


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("torchvision is not installed in this environment (CPU torch); this debug helper is off.")


def import_monailabel_without_torchvision() -> None:
    """Import ``monailabel.transform.post`` even where torchvision is missing (see the module docstring)."""
    if "monailabel.transform.post" in sys.modules:
        return
    try:
        importlib.import_module("torchvision.utils")
        return
    except Exception:  # missing, or a build that does not load beside this torch
        pass
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.utils")}
    package = types.ModuleType("torchvision")
    package.__path__ = []  # type: ignore[attr-defined]
    utils = types.ModuleType("torchvision.utils")
    utils.make_grid = _unavailable  # type: ignore[attr-defined]
    utils.save_image = _unavailable  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = package, utils
    try:
        importlib.import_module("monailabel.transform.post")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
