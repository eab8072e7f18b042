"""Evaluation tasks: one full 3D propagation per object, prompt variant, axis, slice deviation and thickness."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ObjectTaskDataset", "object_prompt", "prepare_object_batch"]


def object_prompt(truth: np.ndarray, axis: int, variant: str, deviation: float = 0.0) -> dict[str, Any]:
    """The prompt a user would give for ``truth``: on its largest-area slice along ``axis``, shifted by
    ``deviation`` times the object's extent (clipped to slices that show the object).

    Args:
        truth: ``(X, Y, Z)`` boolean object.
        axis: the prompt slice's normal.
        variant: ``"mask"`` (the object's pixels on the slice) or ``"box"`` (their tight box).
        deviation: fraction of the object's extent to move the prompt slice by (paper: ±5–20 %).

    Returns:
        keyword arguments for :meth:`PropagationInferer.propagate` plus ``slice_index``.
    """
    areas = truth.sum(axis=tuple(a for a in range(3) if a != axis))
    present = np.nonzero(areas)[0]
    if not len(present):
        raise ValueError("the object is empty.")
    index = int(np.argmax(areas)) + int(round(deviation * (present[-1] - present[0] + 1)))
    index = int(present[np.argmin(np.abs(present - index))])
    plane = np.take(truth, index, axis=axis)
    if variant == "mask":
        prompt = np.zeros(truth.shape, dtype=np.uint8)
        np.moveaxis(prompt, axis, 0)[index] = plane
        return {"mask_prompt": torch.from_numpy(prompt), "axis": axis, "slice_index": index}
    if variant == "box":
        rows, cols = np.nonzero(plane)
        r0, c0, r1, c1 = int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())
        # A box needs some extent each way; grow a degenerate one by a pixel where the slice allows.
        if r1 == r0:
            r1 = min(r0 + 1, plane.shape[0] - 1) if r0 + 1 < plane.shape[0] else r0
            r0 = r1 - 1
        if c1 == c0:
            c1 = min(c0 + 1, plane.shape[1] - 1) if c0 + 1 < plane.shape[1] else c0
            c0 = c1 - 1
        return {"box": (r0, c0, r1, c1), "slice_index": index, "axis": axis}
    raise ValueError(f"unknown prompt variant {variant!r}; use 'mask' or 'box'.")


class ObjectTaskDataset(torch.utils.data.Dataset):
    """Every (volume, object, axis, variant, deviation, thickness) combination as one evaluation item.

    Args:
        volumes: cached volume dicts with ``image`` and ``label`` of shape ``(1, X, Y, Z)``.
        label_values: objects to evaluate (default: every label value of each volume).
        label_names: names for the report.
        axes, variants, deviations, thicknesses_mm: the sweeps.
    """

    def __init__(
        self,
        volumes: Sequence[Mapping[str, Any]] | torch.utils.data.Dataset,
        label_values: Sequence[int] | None = None,
        label_names: Mapping[int | str, str] | None = None,
        axes: Sequence[int] = (2,),
        variants: Sequence[str] = ("mask", "box"),
        deviations: Sequence[float] = (0.0,),
        thicknesses_mm: Sequence[float] = (20.0,),
    ) -> None:
        self.volumes = volumes
        self.names = {int(k): str(v) for k, v in (label_names or {}).items()}
        self.tasks: list[tuple[int, int, int, str, float, float]] = []
        for v in range(len(volumes)):  # type: ignore[arg-type]
            present = set(np.unique(np.asarray(volumes[v]["label"])).astype(int).tolist()) - {0}
            wanted = sorted(present if label_values is None else present & {int(x) for x in label_values})
            for value, axis, variant, deviation, thickness in itertools.product(
                wanted, axes, variants, deviations, thicknesses_mm
            ):
                self.tasks.append((v, value, int(axis), str(variant), float(deviation), float(thickness)))

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        v, value, axis, variant, deviation, thickness = self.tasks[index]
        volume = self.volumes[v]
        truth = np.asarray(volume["label"])[0] == value
        prompt = object_prompt(truth, axis, variant, deviation)
        source = getattr(volume["image"], "meta", {}).get("filename_or_obj", f"volume_{v}")
        return {
            "image": volume["image"],
            "truth": torch.from_numpy(truth),
            "prompt_args": {**prompt, "thickness_mm": thickness},
            "info": {
                "volume": str(source), "label": value, "name": self.names.get(value, str(value)), "axis": axis,
                "variant": variant, "deviation": deviation, "thickness_mm": thickness,
                "prompt_slice": prompt["slice_index"],
            },
        }  # fmt: skip


def first_item(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """``collate_fn`` for a batch of one evaluation item: no stacking, the item as it is."""
    if len(batch) != 1:
        raise ValueError("object evaluation runs one propagation at a time (batch_size 1).")
    return batch[0]


def prepare_object_batch(
    batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, tuple, dict[str, Any]]:
    """``prepare_batch`` for ``SupervisedEvaluator``: image to the inferer, the prompt as its keywords."""
    args = dict(batchdata["prompt_args"])
    if "mask_prompt" in args:
        args.pop("slice_index")
    image = batchdata["image"]
    return (image.to(device) if device is not None else image), batchdata["truth"], (), args
