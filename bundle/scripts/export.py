"""MONAI's single-input network checks (``ckpt_export``, ``verify_net_in_out``) applied to three-input PropMask.

``python -m monai.bundle ckpt_export`` traces or scripts ``network(x)`` with one tensor, and ``verify_net_in_out``
feeds one random tensor shaped as ``network_data_format``'s ``image``. PropMask takes three (the guiding slice, its
mask and the query slices; ``propmask_data_format`` in the metadata), and ``network_data_format`` describes the
bundle's 3D image in and label image out. :class:`StackedPropMask` is PropMask with the three stacked along the
channels, which ``ckpt_export --use_trace true`` exports; :func:`verify_propmask` is ``verify_net_in_out`` for the
three inputs, from ``propmask_data_format``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["StackedPropMask", "verify_propmask"]

logger = logging.getLogger(__name__)


class StackedPropMask(nn.Module):
    """PropMask with one input: ``(B, 2 + Nq, H, W)`` = guiding slice, guiding mask, ``Nq`` query slices.

    Its state dict is PropMask's (``load_state_dict`` and ``state_dict`` pass through), so ``ckpt_export`` loads the
    bundle's ``models/model.pt`` into it unchanged.

    Args:
        network: a :class:`~pam_monai.networks.PropMaskNet`.

    Returns (forward):
        ``(B * Nq, 2, H, W)`` full-resolution logits (background, object) of the query slices, guide by guide.
    """

    def __init__(self, *, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guide, mask, queries = x[:, :1], x[:, 1:2], x[:, 2:, None]
        return self.network(guide, mask, queries)[0]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.network.state_dict(*args, **kwargs)


def _shape(spatial: list[Any], sizes: Mapping[str, int]) -> list[int]:
    return [int(sizes.get(s, 2)) if isinstance(s, str) else int(s) for s in spatial]


def verify_propmask(network: nn.Module, data_format: Mapping[str, Any], guides: int = 2, queries: int = 3) -> bool:
    """``verify_net_in_out`` for PropMask: random inputs shaped and typed as ``data_format`` (the metadata's
    ``propmask_data_format``), ``guides`` guiding slices with ``queries`` query slices each; checks the output's
    channels, dtype and spatial shape.

    Raises:
        ValueError: naming the output property that does not match.
    """
    inputs = data_format["inputs"]
    sizes = {"Nq": queries}
    tensors = []
    for name in ("guiding_image", "guiding_mask", "adjacent_images"):
        spec = inputs[name]
        shape = [guides, *_shape(spec["spatial_shape"], sizes)]
        shape.insert(2 if name == "adjacent_images" else 1, int(spec["num_channels"]))
        tensors.append(torch.rand(shape, dtype=getattr(torch, spec["dtype"])))
    tensors[1] = (tensors[1] > 0.5).to(tensors[1].dtype)
    spec = data_format["outputs"]["pred"]
    network.eval()
    with torch.no_grad():
        output = network(*tensors)[0]
    expected = (guides * queries, int(spec["num_channels"]), *_shape(spec["spatial_shape"], sizes))
    if tuple(output.shape) != expected:
        raise ValueError(f"PropMask's output has shape {tuple(output.shape)}, the metadata says {expected}.")
    if output.dtype != getattr(torch, spec["dtype"]):
        raise ValueError(f"PropMask's output has dtype {output.dtype}, the metadata says {spec['dtype']}.")
    logger.info("data shape of PropMask is verified with no error.")
    return True
