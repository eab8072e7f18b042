"""Where a propagation loses accuracy: one round of PropMask against simply copying the guide mask, per offset.

At ``k`` slices from the guide, PropMask earns its keep only if its mask is closer to the truth than the guide mask
itself (the *copy* baseline: the object assumed not to change). Comparing the two per offset, on generated volumes
and on real anatomy, separates a network that has learnt propagation but does not transfer (beats copying on the
first, not on the second) from one that has not learnt it at all (ties on both). Distance 0 asks the network for
the guide slice itself, with its own mask: a network that redraws a drawn outline along the image's edges (where the
true boundary shows no edge) scores well below 1 there, and every round of a propagation starts from that loss.
Sensitivity below precision per distance means masks that are too small (a propagation that shrinks).

``python -m pam_monai.cli.diagnostics --dataset-dir runs/atlas`` (or ``--synthetic 12``) prints the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from pam_monai.evaluation.metrics import binary_dice
from pam_monai.evaluation.objects import object_prompt
from pam_monai.inferers.propagation import PropagationInferer

__all__ = ["offset_profile", "summarise_profile"]


def offset_profile(
    image: np.ndarray | torch.Tensor,
    label: np.ndarray,
    network: Callable[..., Any],
    *,
    label_values: Iterable[int] | None = None,
    axes: Sequence[int] = (0, 1, 2),
    max_offset: int = 20,
    min_area: int = 20,
    inferer: PropagationInferer | None = None,
) -> list[dict[str, Any]]:
    """One record per object, axis and signed offset: Dice of PropMask's prediction and of the copied guide mask.

    The guide is each object's largest-area slice along the axis with its true mask; offset 0 is the guide slice
    itself; each direction runs until ``max_offset`` or the first slice where the object has fewer than
    ``min_area`` pixels.

    Args:
        image: ``(X, Y, Z)`` image.
        label: ``(X, Y, Z)`` integer labels.
        network: PropMask.
        label_values: objects to measure (default: every nonzero value).
        axes: propagation axes.
        max_offset: farthest slice from the guide.
        min_area: smallest object area (pixels) on a measured slice.
        inferer: supplies the RoI and normalisation settings (default :class:`PropagationInferer`).

    Returns:
        dicts with ``label``, ``axis``, ``offset`` (signed), ``network_dsc``, ``network_sensitivity``,
        ``network_precision`` (0 for an empty prediction) and ``copy_dsc``.
    """
    label = np.asarray(label)
    if label.ndim != 3 or tuple(np.asarray(image).shape[-3:]) != label.shape:
        raise ValueError(f"image {tuple(np.asarray(image).shape)} and label {label.shape} must be the same 3D grid.")
    if max_offset < 1:
        raise ValueError(f"max_offset must be at least 1 slice, got {max_offset}.")
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be among 0, 1 and 2, got {list(axes)}.")
    inferer = inferer or PropagationInferer()
    values = sorted(set(np.unique(label).tolist()) - {0}) if label_values is None else list(label_values)
    records = []
    for value in values:
        truth = label == value
        if not truth.any():
            raise ValueError(f"label {value} is absent from the label image.")
        for axis in axes:
            index = object_prompt(truth, axis, "mask")["slice_index"]
            stack = np.moveaxis(truth, axis, 0)
            offsets = [0]
            for step in (-1, 1):
                for k in range(1, max_offset + 1):
                    i = index + step * k
                    if not 0 <= i < len(stack) or int(stack[i].sum()) < min_area:
                        break
                    offsets.append(step * k)
            probabilities = inferer.predict_slices(
                image, network, guide_mask=stack[index], slice_index=index, offsets=offsets, axis=axis
            )
            predicted = (probabilities > 0.5).cpu().numpy()
            for offset, mask in zip(offsets, predicted):
                target = stack[index + offset]
                hits = float(np.logical_and(mask, target).sum())
                records.append(
                    {
                        "label": int(value),
                        "axis": int(axis),
                        "offset": int(offset),
                        "network_dsc": binary_dice(mask, target),
                        "network_sensitivity": hits / max(float(target.sum()), 1.0),
                        "network_precision": hits / float(mask.sum()) if mask.any() else 0.0,
                        "copy_dsc": binary_dice(stack[index], target),
                    }
                )
    return records


def summarise_profile(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean network Dice, sensitivity and precision and copy Dice per distance ``|offset|`` (both directions
    together; distance 0 is the guide slice itself)."""
    rows = []
    for distance in sorted({abs(r["offset"]) for r in records}):
        chosen = [r for r in records if abs(r["offset"]) == distance]
        network = float(np.mean([r["network_dsc"] for r in chosen]))
        copy = float(np.mean([r["copy_dsc"] for r in chosen]))
        sensitivity = float(np.mean([r["network_sensitivity"] for r in chosen]))
        precision = float(np.mean([r["network_precision"] for r in chosen]))
        rows.append(
            {"distance": distance, "n": len(chosen), "network_dsc": network, "network_sensitivity": sensitivity,
             "network_precision": precision, "copy_dsc": copy, "gain": network - copy}
        )  # fmt: skip
    return rows
