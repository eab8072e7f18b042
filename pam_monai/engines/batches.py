"""Batches, loss and metric of the training engines.

:func:`prepare_propagation_batch` / :func:`prepare_box2mask_batch` turn collated tasks into ``(inputs, targets)``
for MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``; :class:`pam_monai.inferers.task.TaskInferer` unpacks
``inputs`` so PropMask gets its three arguments. The loss is soft Dice averaged over the deep-supervision heads; the
metric feeds MONAI's ``MeanDice`` with the soft vote of all heads, as at inference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.losses import DeepSupervisionLoss, DiceLoss
from monai.utils import CommonKeys

from pam_monai.engines.utils import check_target
from pam_monai.inferers.box2mask import foreground_probability

__all__ = [
    "deep_supervision_dice_loss",
    "prepare_batch_for",
    "prepare_box2mask_batch",
    "prepare_propagation_batch",
    "segmentation_output_transform",
]


def _to(x: torch.Tensor, device: str | torch.device | None, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    return x.to(device=device, non_blocking=non_blocking, **kwargs) if device is not None or kwargs else x


def prepare_propagation_batch(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``prepare_batch`` of the PropMask engines.

    Args:
        batchdata: collated tasks: ``guide_image`` / ``guide_mask`` ``(B, 1, S, S)``, ``query_images`` /
            ``query_masks`` ``(B, Nq, 1, S, S)``.
        device: target device.
        non_blocking: non-blocking copies.
        kwargs: more arguments of ``Tensor.to`` (e.g. ``memory_format``).

    Returns:
        ``((guide_image, guide_mask, query_images), query_masks (B * Nq, 1, S, S))``; with
        :class:`~pam_monai.inferers.task.TaskInferer` the network is called as
        ``network(guide_image, guide_mask, query_images)``.
    """
    guide_image = _to(batchdata["guide_image"], device, non_blocking, **kwargs).float()
    guide_mask = _to(batchdata["guide_mask"], device, non_blocking, **kwargs).float()
    query_images = _to(batchdata["query_images"], device, non_blocking, **kwargs).float()
    targets = _to(batchdata["query_masks"], device, non_blocking, **kwargs).float().flatten(0, 1)
    return (guide_image, guide_mask, query_images), targets


def prepare_box2mask_batch(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` of the Box2Mask engines: ``(image (B, 1, S, S), label (B, 1, S, S))``."""
    image = _to(batchdata[CommonKeys.IMAGE], device, non_blocking, **kwargs).float()
    label = _to(batchdata[CommonKeys.LABEL], device, non_blocking, **kwargs).float()
    return image, label


def prepare_batch_for(target: str) -> Callable[..., Any]:
    """The ``prepare_batch`` function of ``target``."""
    return prepare_propagation_batch if check_target(target) == "propmask" else prepare_box2mask_batch


def deep_supervision_dice_loss(num_heads: int = 5, **dice_kwargs: Any) -> DeepSupervisionLoss:
    """Soft Dice averaged over ``num_heads`` deep-supervision heads (targets downsampled by nearest-exact).

    Defaults: ``DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)`` with
    ``smooth_nr = smooth_dr = 1e-5``; ``dice_kwargs`` override them.
    """
    options = {
        "softmax": True,
        "to_onehot_y": True,
        "include_background": False,
        "batch": True,
        "smooth_nr": 1e-5,
        "smooth_dr": 1e-5,
        **dice_kwargs,
    }
    return DeepSupervisionLoss(DiceLoss(**options), weights=[1.0 / num_heads] * num_heads)


def segmentation_output_transform(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``output_transform`` for MONAI metric handlers: one-hot prediction and label, both ``(N, 2, S, S)``.

    The prediction is the soft vote of all heads (upsampled, averaged, argmax), as at inference.
    """
    pred, label = output[CommonKeys.PRED], output[CommonKeys.LABEL]
    heads = list(pred) if isinstance(pred, (list, tuple)) else [pred]
    label = _to(label, None, False).float()
    foreground = foreground_probability(heads, int(label.shape[-1])) > 0.5
    y_pred = torch.stack((~foreground, foreground), dim=1).float()
    y = torch.cat((1.0 - label, label), dim=1)
    return y_pred, y
