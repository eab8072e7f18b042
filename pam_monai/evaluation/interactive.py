"""Simulated-user evaluation of interactive refinement: how fast does a segmentation improve with annotated slices?

The protocol used for interactive segmentation, with whole slices as the user's corrections:

* **corrections** (:func:`simulate_corrections`): start from the true mask of the object's largest slice along the
  axis; at each step the user draws the true mask of the slice where the current result is most wrong (false
  positives + false negatives, among the slices that show the object and are not annotated yet), and the method
  segments again from all the slices drawn so far;
* **fixed** (:func:`fixed_slices`): the largest slice plus the slices half-way from it to each end of the object,
  given at once.

A method is any callable ``segment(slices) -> (X, Y, Z) bool`` where ``slices`` maps slice indices (along the axis)
to ``(H, W)`` boolean masks; a stateful method (one that refines its previous result) is told about a new object
through an optional ``reset()``. Two weight-free methods given the same slices are here too: 3D Slicer's *Fill
between slices* (ITK's morphological contour interpolation, :func:`fill_between_slices`) and a 3D random walker
seeded on the slices (:func:`random_walker_slices`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pam_monai.evaluation.metrics import binary_dice
from pam_monai.inferers.random_walker import random_walker_probability
from pam_monai.prompts.core import plane_axes

__all__ = [
    "InteractionTrace",
    "PromptSegmenter",
    "SliceSegmenter",
    "fill_between_slices",
    "fixed_slices",
    "largest_slice",
    "random_walker_slices",
    "run_fixed",
    "simulate_corrections",
    "slice_errors",
    "slice_prompt",
    "true_slices",
    "worst_slice",
]

SliceSegmenter = Callable[[Mapping[int, np.ndarray]], np.ndarray]
"""``segment(slices) -> (X, Y, Z) bool``: ``slices`` maps slice indices along the axis to ``(H, W)`` bool masks."""


def _areas(truth: np.ndarray, axis: int) -> np.ndarray:
    plane_axes(axis)
    return np.asarray(truth, dtype=bool).sum(axis=tuple(a for a in range(3) if a != axis))


def largest_slice(truth: np.ndarray, axis: int) -> int:
    """The slice (normal to ``axis``) where the ``(X, Y, Z)`` boolean object ``truth`` has the largest area."""
    areas = _areas(truth, axis)
    if not areas.any():
        raise ValueError("the object is empty: no slice to annotate.")
    return int(np.argmax(areas))


def fixed_slices(truth: np.ndarray, axis: int) -> list[int]:
    """The fixed three-slice protocol: the largest slice and the slices half-way from it to each end of the object
    (fewer when the object is too thin for three distinct slices)."""
    largest = largest_slice(truth, axis)
    present = np.nonzero(_areas(truth, axis))[0]
    first, last = int(present[0]), int(present[-1])
    return sorted({(largest + first) // 2, largest, -((-(largest + last)) // 2)})


def true_slices(truth: np.ndarray, axis: int, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """The true ``(H, W)`` masks of the slices ``indices`` along ``axis``: what a perfect user draws."""
    moved = np.moveaxis(np.asarray(truth, dtype=bool), axis, 0)
    return {int(k): moved[int(k)].copy() for k in indices}


def slice_errors(prediction: np.ndarray, truth: np.ndarray, axis: int) -> np.ndarray:
    """Per slice along ``axis``: false positives + false negatives of ``prediction`` against ``truth``."""
    wrong = np.asarray(prediction, dtype=bool) ^ np.asarray(truth, dtype=bool)
    return _areas(wrong, axis)


def worst_slice(prediction: np.ndarray, truth: np.ndarray, axis: int, annotated: Sequence[int] = ()) -> int | None:
    """The slice a simulated user corrects next: the largest error (false positives + false negatives) among the
    slices that show the object and are not ``annotated`` yet; the first of equal ones; ``None`` if none is wrong.

    Slices without the object are never chosen: their true mask is empty, which is no correction a user can draw.
    """
    errors = slice_errors(prediction, truth, axis)
    errors[_areas(truth, axis) == 0] = 0
    errors[[int(k) for k in annotated]] = 0
    k = int(np.argmax(errors))
    return k if errors[k] > 0 else None


def slice_prompt(shape: Sequence[int], slices: Mapping[int, np.ndarray], axis: int, label: int = 1) -> np.ndarray:
    """A ``uint8`` mask prompt volume of ``shape``: ``label`` on the masks of ``slices`` (indices along ``axis``)."""
    prompt = np.zeros(tuple(shape), dtype=np.uint8)
    moved = np.moveaxis(prompt, axis, 0)
    for k, mask in slices.items():
        moved[int(k)][np.asarray(mask, dtype=bool)] = label
    return prompt


@dataclass
class InteractionTrace:
    """What one method did for one object.

    Attributes:
        slices: the annotated slices in the order the user drew them.
        dice: DSC of the result after 1, 2, ... annotated slices (``dice[n - 1]`` after ``n``).
        seconds: wall time of each call of the method (the first from one slice, the others corrections).
    """

    slices: list[int] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def dice_after(self, count: int) -> float:
        """DSC after ``count`` annotated slices; a user who stopped early (nothing left to correct) keeps the last."""
        if not self.dice:
            raise ValueError("the trace is empty.")
        return self.dice[min(count, len(self.dice)) - 1]

    @property
    def correction_seconds(self) -> list[float]:
        """Wall time of the calls after the first (each adds one slice)."""
        return self.seconds[1:]


def _timed(segment: SliceSegmenter, slices: Mapping[int, np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = np.asarray(segment(dict(slices)), dtype=bool)
    return result, time.perf_counter() - start


def _reset(segment: SliceSegmenter) -> None:
    reset = getattr(segment, "reset", None)
    if callable(reset):
        reset()


def simulate_corrections(
    segment: SliceSegmenter, truth: np.ndarray, axis: int, max_slices: int = 5
) -> InteractionTrace:
    """Run the simulated user on one object: the largest slice first, then the worst slice at every step.

    Args:
        segment: the method (see :data:`SliceSegmenter`); its ``reset()``, if any, is called first.
        truth: ``(X, Y, Z)`` boolean object.
        axis: the slices' normal.
        max_slices: stop after this many annotated slices (earlier when no slice showing the object is wrong).

    Returns:
        the trace: slices, DSC after each, seconds per call.
    """
    truth = np.asarray(truth, dtype=bool)
    if max_slices < 1:
        raise ValueError(f"max_slices must be at least 1, got {max_slices}.")
    _reset(segment)
    trace = InteractionTrace()
    slices = true_slices(truth, axis, [largest_slice(truth, axis)])
    while True:
        result, seconds = _timed(segment, slices)
        trace.slices.append(list(slices)[-1])
        trace.dice.append(binary_dice(result, truth))
        trace.seconds.append(seconds)
        if len(slices) >= max_slices:
            return trace
        k = worst_slice(result, truth, axis, list(slices))
        if k is None:
            return trace
        slices.update(true_slices(truth, axis, [k]))


def run_fixed(segment: SliceSegmenter, truth: np.ndarray, axis: int) -> InteractionTrace:
    """The fixed protocol on one object: :func:`fixed_slices` given at once (one call, after ``reset()``)."""
    truth = np.asarray(truth, dtype=bool)
    _reset(segment)
    indices = fixed_slices(truth, axis)
    result, seconds = _timed(segment, true_slices(truth, axis, indices))
    return InteractionTrace(slices=indices, dice=[binary_dice(result, truth)], seconds=[seconds])


# -------------------------------------------------------------------------------------------------------------
# methods
# -------------------------------------------------------------------------------------------------------------


class PromptSegmenter:
    """PAM (or any promptable method) as a :data:`SliceSegmenter`.

    Args:
        predictor: an object with ``segment(mask_prompt=..., axis=...)`` returning a result with ``labels``
            (``(X, Y, Z)``), e.g. :class:`~pam_monai.predictor.PAMPredictor` with its image set.
        shape: the image's ``(X, Y, Z)`` shape.
        axis: the slices' normal.
        refine: after the first call of an object, pass each new slice to ``predictor.refine(result,
            mask_slices=...)`` as a prompt volume marking that slice only (the predictor keeps the other guides and
            recomputes only around the new one) instead of segmenting again from all the slices; needs a predictor
            with ``refine``.
    """

    def __init__(self, *, predictor: Any, shape: Sequence[int], axis: int, refine: bool = False) -> None:
        plane_axes(axis)
        if refine and not callable(getattr(predictor, "refine", None)):
            raise ValueError("refine=True needs a predictor with a refine() method.")
        self.predictor = predictor
        self.shape = tuple(int(s) for s in shape)
        self.axis = axis
        self.refine = refine
        self._result: Any = None
        self._given: set[int] = set()

    def reset(self) -> None:
        """Forget the previous object's result."""
        self._result, self._given = None, set()

    def __call__(self, slices: Mapping[int, np.ndarray]) -> np.ndarray:
        new = {k: v for k, v in slices.items() if k not in self._given}
        if self.refine and self._result is not None and self._given <= set(slices) and len(new) == 1:
            self._result = self.predictor.refine(self._result, mask_slices=slice_prompt(self.shape, new, self.axis))
        else:
            prompt = slice_prompt(self.shape, slices, self.axis)
            self._result = self.predictor.segment(mask_prompt=prompt, axis=self.axis)
        self._given = set(slices)
        labels = self._result.labels
        labels = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
        return labels > 0


_ITK: Any = None


def _itk(threads: int | None = None) -> Any:
    """The ``itk`` module with its morphological contour interpolation (imported once; it loads slowly)."""
    global _ITK
    if _ITK is None:
        try:
            import itk
        except ImportError as error:
            raise ImportError(
                "Fill between slices needs ITK: pip install itk-morphologicalcontourinterpolation"
            ) from error
        _ITK = itk
    if threads is not None:
        _ITK.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(threads))
    return _ITK


def fill_between_slices(
    slices: Mapping[int, np.ndarray], shape: Sequence[int], axis: int, threads: int | None = None
) -> np.ndarray:
    """3D Slicer's *Fill between slices*: ITK's ``MorphologicalContourInterpolator`` on the annotated slices.

    The object is interpolated between the outermost annotated slices and not extrapolated beyond them (one slice
    gives back that slice). The work is done on the slices' bounding block (plus two pixels in-plane).

    Args:
        slices: ``{index: (H, W) bool}`` masks on slices normal to ``axis``.
        shape: the ``(X, Y, Z)`` output shape.
        axis: the slices' normal.
        threads: ITK's thread count (default: ITK's own).

    Returns:
        ``(X, Y, Z)`` boolean mask.
    """
    plane_axes(axis)
    drawn = {int(k): np.asarray(v, dtype=bool) for k, v in slices.items() if np.asarray(v).any()}
    out = np.zeros(tuple(shape), dtype=bool)
    if not drawn:
        return out
    moved = np.moveaxis(out, axis, 0)  # a view: writing it writes ``out``
    union = np.logical_or.reduce(list(drawn.values()))
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    r = slice(max(int(rows[0]) - 2, 0), min(int(rows[-1]) + 3, union.shape[0]))
    c = slice(max(int(cols[0]) - 2, 0), min(int(cols[-1]) + 3, union.shape[1]))
    first, last = min(drawn), max(drawn)
    block = np.zeros((last - first + 1, r.stop - r.start, c.stop - c.start), dtype=np.uint8)
    for k, mask in drawn.items():
        block[k - first] = mask[r, c]
    if len(drawn) > 1:
        itk = _itk(threads)
        interpolator = itk.MorphologicalContourInterpolator.New(itk.image_from_array(block))
        interpolator.SetAxis(2)  # ITK orders axes x, y, z: the array's first axis is ITK's last
        interpolator.Update()
        block = itk.array_from_image(interpolator.GetOutput())
    moved[first : last + 1, r, c] = block > 0
    return out


def random_walker_slices(
    image: np.ndarray,
    slices: Mapping[int, np.ndarray],
    axis: int,
    beta: float = 130.0,
    margin: float = 1.0,
    max_voxels: int | None = None,
) -> np.ndarray:
    """A 3D random walker seeded on several annotated slices (the one-slice baseline's seeds on each of them).

    Args:
        image: ``(X, Y, Z)`` intensities.
        slices: ``{index: (H, W) bool}`` masks on slices normal to ``axis``.
        axis: the slices' normal.
        beta: edge weight on intensities scaled to [0, 1] in the region.
        margin: region growth relative to the slices' size.
        max_voxels: larger regions are walked on a coarser grid (``None``: full resolution).

    Returns:
        ``(X, Y, Z)`` boolean mask.
    """
    plane_axes(axis)
    moved = np.moveaxis(np.asarray(image), axis, 0)
    planes = [(int(k), np.asarray(v, dtype=bool)) for k, v in sorted(slices.items())]
    probability, region = random_walker_probability(moved, planes, beta=beta, margin=margin, max_voxels=max_voxels)
    out = np.zeros(moved.shape, dtype=bool)
    out[region] = probability > 0.5
    for k, mask in planes:  # the drawn slices are the user's word
        out[k] = mask
    return np.moveaxis(out, 0, axis)
