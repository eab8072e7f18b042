"""PAM's transforms: MONAI array and dictionary transforms, and the plain tensor functions behind them.

Names are imported lazily (PEP 562): ``pam_monai.transforms.functional`` (what the inferers use) can be imported
without the MONAI transform modules, and with them all of MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pam_monai.lazy import lazy_exports

if TYPE_CHECKING:
    from .functional import (
        RoIWindow,
        apply_window,
        candidate_windows,
        crop_resize,
        guided_window,
        paste_back,
        pooled_foreground_window,
        square_roi,
    )
    from .intensity import GuidedIntensityWindow, GuidedIntensityWindowd
    from .prompt import LoadPromptd
    from .roi import SquareRoICrop, SquareRoICropd

_LAZY = {
    "GuidedIntensityWindow": ".intensity",
    "GuidedIntensityWindowd": ".intensity",
    "LoadPromptd": ".prompt",
    "RoIWindow": ".functional",
    "SquareRoICrop": ".roi",
    "SquareRoICropd": ".roi",
    "apply_window": ".functional",
    "candidate_windows": ".functional",
    "crop_resize": ".functional",
    "guided_window": ".functional",
    "paste_back": ".functional",
    "pooled_foreground_window": ".functional",
    "square_roi": ".functional",
}

__all__ = [
    "GuidedIntensityWindow",
    "GuidedIntensityWindowd",
    "LoadPromptd",
    "RoIWindow",
    "SquareRoICrop",
    "SquareRoICropd",
    "apply_window",
    "candidate_windows",
    "crop_resize",
    "guided_window",
    "paste_back",
    "pooled_foreground_window",
    "square_roi",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
