"""Data utilities for PAM: procedural synthetic training volumes.

Names are imported lazily (PEP 562): importing the package loads no generator code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pam_monai.lazy import lazy_exports

if TYPE_CHECKING:
    from .synthetic import SyntheticVolume, SyntheticVolumeDataset, generate_volume, write_synthetic_datalist

_LAZY = {
    "SyntheticVolume": ".synthetic",
    "SyntheticVolumeDataset": ".synthetic",
    "generate_volume": ".synthetic",
    "write_synthetic_datalist": ".synthetic",
}

__all__ = ["SyntheticVolume", "SyntheticVolumeDataset", "generate_volume", "write_synthetic_datalist"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
