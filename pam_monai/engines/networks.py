"""The networks of a training run: built fresh, loaded for fine-tuning, exported as the bundle's weights."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from pam_monai.engines.utils import check_target
from pam_monai.errors import CheckpointError, TrainingSetupError
from pam_monai.networks.checkpoint import load_network_weights
from pam_monai.networks.configs import build_box2mask, build_propmask

__all__ = ["build_network", "export_network", "load_pretrained", "unwrap_network"]

logger = logging.getLogger(__name__)


def build_network(target: str, network_config: str = "paper", input_size: int | None = None) -> nn.Module:
    """A fresh PropMask (``target="propmask"``) or Box2Mask network of the named configuration.

    Args:
        target: ``"propmask"`` or ``"box2mask"``.
        network_config: ``"paper"`` or ``"light"`` (see :data:`pam_monai.networks.NETWORK_CONFIGS`).
        input_size: side of the training crops (default: the configuration's).

    Raises:
        TrainingSetupError: an unknown target or configuration, or an input size the network cannot take.
    """
    overrides = {} if input_size is None else {"input_size": int(input_size)}
    builder = build_propmask if check_target(target) == "propmask" else build_box2mask
    try:
        return builder(network_config, **overrides)
    except (TypeError, ValueError) as exc:
        raise TrainingSetupError(" ".join(str(exc).split())) from exc


def load_pretrained(network: nn.Module, checkpoint: str | os.PathLike[str] | None) -> nn.Module:
    """Load fine-tuning weights (this package's checkpoints, training checkpoints or reference weights).

    ``None`` / ``""`` leaves the network as it is.

    Raises:
        CheckpointError: an unreadable file, or weights of another width (choose the matching ``network_config``).
    """
    if checkpoint is None or str(checkpoint).strip().lower() in ("", "none", "null"):
        return network
    try:
        load_network_weights(network, checkpoint)
    except CheckpointError as exc:
        hint = (
            " Choose the network_config (paper / light) the weights were trained with." if "shape" in str(exc) else ""
        )
        message = str(exc) if str(checkpoint) in str(exc) else f"{checkpoint}: {exc}"
        raise CheckpointError(message + hint) from exc
    logger.info(f"fine-tuning from {checkpoint}")
    return network


def unwrap_network(network: nn.Module) -> nn.Module:
    """The network inside ``DataParallel`` / ``DistributedDataParallel`` wrappers (``network.module``)."""
    while hasattr(network, "module") and isinstance(network.module, nn.Module):
        network = network.module
    return network


def export_network(network: nn.Module, path: str | os.PathLike[str], target: str | None = None) -> Path:
    """Write the trained weights as a plain float16 state dict (atomic), the bundle's ``models/*.pt`` format.

    A plain state dict is what MONAI's bundle tools and MONAI Label load into ``network_def``; float16 halves the
    size, and ``load_state_dict`` casts it back. It also loads with
    :func:`~pam_monai.networks.checkpoint.build_network_from_checkpoint`.
    """
    from pam_monai.data.io import atomic_path

    if target is not None:
        check_target(target)
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
        for k, v in unwrap_network(network).state_dict().items()
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    logger.info(f"exported the {target or 'trained'} weights to {path}")
    return Path(path)
