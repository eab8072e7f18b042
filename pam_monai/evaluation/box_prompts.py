"""Box prompts on real slices: the first mask Box2Mask makes from a box, against the truth on the prompt slice.

A box prompt reaches PropMask only through its first mask, so this is where box prompts can lose to mask prompts
before any propagation. For every object and axis: the object's largest-area slice
(:func:`~pam_monai.evaluation.objects.object_prompt`), its true mask there, the tight box of that mask, and the mask a
:class:`~pam_monai.inferers.box2masker.Box2Masker` makes from the box; scored by DSC, sensitivity, precision, the
ratio of predicted to true area and how many of the box's four edges the mask reaches (a tight box's object reaches
all four).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from pam_monai.evaluation.metrics import group_means
from pam_monai.evaluation.objects import object_prompt

__all__ = [
    "BoxPromptCase",
    "atlas_objects",
    "box_prompt_cases",
    "evaluate_first_masks",
    "first_mask_scores",
    "summarise_first_masks",
]

SCORES = ("dsc", "sensitivity", "precision", "area_ratio", "edges_touched")
"""The per-case scores :func:`summarise_first_masks` averages."""


@dataclass(frozen=True)
class BoxPromptCase:
    """One object prompted with its tight box on its largest-area slice along ``axis``.

    Attributes:
        volume: name of the volume.
        name: name of the object.
        axis: the prompt slice's normal.
        slice_index: the prompt slice.
        image: ``(H, W)`` float32 slice.
        truth: ``(H, W)`` boolean true mask on that slice.
        box: inclusive ``(r0, c0, r1, c1)``.
    """

    volume: str
    name: str
    axis: int
    slice_index: int
    image: torch.Tensor
    truth: np.ndarray
    box: tuple[int, int, int, int]


def atlas_objects(structures: Sequence[str] | None = None) -> Iterable[tuple[str, torch.Tensor, dict[str, np.ndarray]]]:
    """The MNI152 template and the boolean ``(X, Y, Z)`` mask of each atlas test structure (the test set: report
    on it, choose nothing on it).

    Args:
        structures: a subset of :data:`~pam_monai.data.atlas.SUBCORTICAL_STRUCTURES` (default: all of them).

    Yields:
        one ``("mni152", image, {structure: mask})``, the image a ``MetaTensor`` with the template's affine.
    """
    from pam_monai.data.atlas import SUBCORTICAL_STRUCTURES, load_template_and_labels

    wanted = list(structures or SUBCORTICAL_STRUCTURES)
    unknown = [s for s in wanted if s not in SUBCORTICAL_STRUCTURES]
    if unknown:
        raise ValueError(f"structure {unknown[0]!r} is no atlas test structure; choose from the 17 subcortical ones.")
    template, labels, names = load_template_and_labels()
    image = MetaTensor(torch.as_tensor(np.asarray(template.dataobj, dtype=np.float32)), affine=template.affine)
    yield "mni152", image, {s: labels == names[s] for s in wanted}


def box_prompt_cases(
    objects: Iterable[tuple[str, Any, dict[str, np.ndarray]]], axes: Sequence[int] = (0, 1, 2)
) -> list[BoxPromptCase]:
    """Every object of every volume prompted with its tight box on its largest-area slice, along each axis.

    Args:
        objects: ``(volume name, (X, Y, Z) image, {object: (X, Y, Z) boolean mask})`` triples, e.g.
            :func:`~pam_monai.evaluation.candidate.validation_objects` or :func:`atlas_objects`.
        axes: the prompt axes.

    Returns:
        one case per (volume, object, axis); empty objects are skipped.
    """
    cases = []
    for volume, image, masks in objects:
        array = np.asarray(image, dtype=np.float32)
        for name, truth in masks.items():
            if not truth.any():
                continue
            for axis in axes:
                prompt = object_prompt(truth, int(axis), "box")
                index = int(prompt["slice_index"])
                plane = np.ascontiguousarray(np.take(array, index, axis=int(axis)))
                cases.append(
                    BoxPromptCase(
                        volume, name, int(axis), index, torch.from_numpy(plane),
                        np.take(truth, index, axis=int(axis)).copy(), tuple(int(v) for v in prompt["box"]),
                    )
                )  # fmt: skip
    return cases


def first_mask_scores(mask: np.ndarray, truth: np.ndarray, box: Sequence[int]) -> dict[str, float]:
    """Scores of a first mask against the truth on the prompt slice.

    Args:
        mask: ``(H, W)`` boolean first mask.
        truth: ``(H, W)`` boolean true mask.
        box: the inclusive box ``(r0, c0, r1, c1)`` the mask was made from.

    Returns:
        ``dsc``, ``sensitivity``, ``precision`` (0 for an empty mask), ``area_ratio`` (predicted / true area),
        ``edges_touched`` (how many of the box's four edges the mask reaches, 0-4), ``box_fill`` (true area / box
        area) and ``whole_box`` (1.0 when the mask is the whole box: Box2Mask's fall-back or a filled box).
    """
    if mask.shape != truth.shape:
        raise ValueError(f"mask {mask.shape} and truth {truth.shape} must have the same shape.")
    r0, c0, r1, c1 = (int(v) for v in box)
    tp, predicted, true = float((mask & truth).sum()), float(mask.sum()), float(truth.sum())
    inside = mask[r0 : r1 + 1, c0 : c1 + 1]
    edges = sum(int(e.any()) for e in (inside[0], inside[-1], inside[:, 0], inside[:, -1]))
    return {
        "dsc": 2 * tp / max(predicted + true, 1.0),
        "sensitivity": tp / max(true, 1.0),
        "precision": tp / predicted if predicted else 0.0,
        "area_ratio": predicted / max(true, 1.0),
        "edges_touched": float(edges),
        "box_fill": true / float(inside.size),
        "whole_box": float(bool(inside.all())),
    }


def evaluate_first_masks(
    cases: Sequence[BoxPromptCase], masker: Callable[..., torch.Tensor], network: Callable[..., Any]
) -> list[dict[str, Any]]:
    """Make the first mask of every case with ``masker`` and ``network``; one row of scores per case.

    Args:
        cases: from :func:`box_prompt_cases`.
        masker: a :class:`~pam_monai.inferers.box2masker.Box2Masker` (or anything called the same way).
        network: the Box2Mask network.

    Returns:
        rows with ``volume``, ``object``, ``axis``, ``slice_index``, ``box`` and :func:`first_mask_scores`.
    """
    rows = []
    for case in cases:
        mask = np.asarray(masker(case.image, network, box=case.box).cpu()).astype(bool)
        rows.append({
            "volume": case.volume, "object": case.name, "axis": case.axis, "slice_index": case.slice_index,
            "box": case.box, **first_mask_scores(mask, case.truth, case.box),
        })  # fmt: skip
    return rows


def summarise_first_masks(rows: Sequence[dict[str, Any]], group_by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Mean scores (:data:`SCORES`) per group of rows, with the number of cases as ``objects``; no ``group_by``
    gives one overall row."""
    return group_means(rows, group_by, SCORES)
