"""PAM's inferers: the propagation and Box2Mask as MONAI ``Inferer`` classes, and the MONAI-free classes they wrap.

Names are imported lazily (PEP 562): :mod:`pam_monai.inferers.propagator` (what the predictor and the command line
use) can be imported without the MONAI inferer modules, and with them all of MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pam_monai.lazy import lazy_exports

if TYPE_CHECKING:
    from .box2mask import Box2MaskInferer
    from .box2masker import Box2Masker, foreground_probability
    from .propagation import PropagationInferer
    from .propagation_parts import PropagationResult, neighbourhood_size
    from .propagator import FUSION_RULES, InferenceSettingError, Propagator
    from .refinement import refine_object

_LAZY = {
    "Box2MaskInferer": ".box2mask",
    "Box2Masker": ".box2masker",
    "FUSION_RULES": ".propagator",
    "InferenceSettingError": ".propagator",
    "PropagationInferer": ".propagation",
    "PropagationResult": ".propagation_parts",
    "Propagator": ".propagator",
    "foreground_probability": ".box2masker",
    "neighbourhood_size": ".propagation_parts",
    "refine_object": ".refinement",
}

__all__ = [
    "FUSION_RULES",
    "Box2MaskInferer",
    "Box2Masker",
    "InferenceSettingError",
    "PropagationInferer",
    "PropagationResult",
    "Propagator",
    "foreground_probability",
    "neighbourhood_size",
    "refine_object",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
