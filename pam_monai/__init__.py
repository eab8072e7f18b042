"""PAM (propagation-based segmentation of any 3D object from one 2D prompt) for MONAI.

The main entry points are importable from the package itself; each is imported on first use, so that
``import pam_monai`` (and the command line, which starts here) stays cheap::

    from pam_monai import PAMPredictor

    predictor = PAMPredictor.from_checkpoints()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pam_monai.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pam_monai.inferers.propagation import PropagationInferer
    from pam_monai.networks.configs import build_box2mask, build_propmask
    from pam_monai.predictor import PAMPredictor

_LAZY = {
    "PAMPredictor": "pam_monai.predictor",
    "PropagationInferer": "pam_monai.inferers.propagation",
    "build_box2mask": "pam_monai.networks.configs",
    "build_propmask": "pam_monai.networks.configs",
}

__all__ = ["PAMPredictor", "PropagationInferer", "__version__", "build_box2mask", "build_propmask"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
