"""Named network configurations: the paper's and a light one for CPU inference."""

from __future__ import annotations

from typing import Any

from torch import nn

from pam_monai.networks.box2mask import Box2MaskNet
from pam_monai.networks.propmask import PropMaskNet

__all__ = ["NETWORK_CONFIGS", "build_box2mask", "build_propmask"]

NETWORK_CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {"features": (32, 64, 128, 256, 512, 512), "input_size": 224, "attention_stages": (2, 3, 4, 5)},
    # Sized for CPU inference: thin full-resolution stages, where a CPU spends most of its time.
    "light": {"features": (8, 16, 32, 64, 128, 128), "input_size": 128, "attention_stages": (2, 3, 4, 5)},
}


def _config(name: str) -> dict[str, Any]:
    if name not in NETWORK_CONFIGS:
        raise ValueError(f"unknown network configuration {name!r}; choose one of {sorted(NETWORK_CONFIGS)}.")
    return dict(NETWORK_CONFIGS[name])


def build_propmask(name: str = "paper", **overrides: Any) -> nn.Module:
    """A :class:`PropMaskNet` of the named configuration."""
    return PropMaskNet(**{**_config(name), **overrides})


def build_box2mask(name: str = "paper", **overrides: Any) -> nn.Module:
    """A :class:`Box2MaskNet` of the named configuration."""
    config = _config(name)
    config.pop("attention_stages")
    return Box2MaskNet(**{**config, **overrides})
