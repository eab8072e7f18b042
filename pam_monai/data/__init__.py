"""Data utilities for PAM: procedural synthetic training volumes.

Names are imported lazily (PEP 562): importing the package loads no generator code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .synthetic import SyntheticVolume, SyntheticVolumeDataset, generate_volume, write_synthetic_datalist

_LAZY = {
    "SyntheticVolume": ".synthetic",
    "SyntheticVolumeDataset": ".synthetic",
    "generate_volume": ".synthetic",
    "write_synthetic_datalist": ".synthetic",
}

__all__ = ["SyntheticVolume", "SyntheticVolumeDataset", "generate_volume", "write_synthetic_datalist"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
