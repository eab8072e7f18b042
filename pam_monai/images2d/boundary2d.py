"""Boundary refinement of a propagated foreground from the guides' own intensities.

PropMask's probability is smooth across an object's edge: on generated dark ellipses the one-pixel ring outside
each object is ~40 % foreground with probabilities near 1, so neither a probability band nor a threshold finds the
wrong pixels. They lie in a thin ring around the predicted boundary, where the image's intensity may tell object
from background better than the network does. The refinement, learnt from the guides at run time:

* **Intensity likelihood ratio:** histograms of the guides' intensities inside and outside their masks, taken in a
  band around the annotated boundaries (the pixels the refinement will judge), smoothed;
  ``log p(I | object) - log p(I | background)`` per intensity bin.
* **Ring:** pixels within ``radius`` pixels (4-connected steps) of the thresholded network foreground's boundary,
  inside or outside it. Every other pixel keeps the network's decision.
* **Decision in the ring:** naive-Bayes combination of the network and the intensity,
  ``weight * (logit(p) - logit(threshold)) + log_ratio(I) > 0``.
* **Calibration:** ``radius`` and ``weight`` are picked on the guides themselves (the network's probability of
  each guide image against its mask, :func:`guide_refinement`) from a small grid, and the refinement is switched
  off (``radius = 0``) unless it raises the guides' pixel Dice by at least ``min_gain`` and the intensity alone
  classifies the guides' boundary band with a balanced accuracy of at least ``min_accuracy``.

:class:`RingRefinement` refines whole arrays; :class:`RefiningStream` refines consecutive full-width bands of
probability rows, as :func:`pam_monai.images2d.sliding2d.stitch_probability` emits them, with a halo of ``radius``
rows, reading the image rows it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from pam_monai.errors import Propagate2DError
from pam_monai.images2d.io import ArrayRegionReader
from pam_monai.images2d.sliding2d import InstanceGuides, stitch_probability

__all__ = [
    "RefiningStream",
    "RingRefinement",
    "calibrate_ring_refinement",
    "dice",
    "guide_refinement",
    "intensity_log_ratio",
    "ring",
]

_CROSS = ndimage.generate_binary_structure(2, 1)
_MAX_LOGIT = 12.0


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Pixel Dice of two boolean arrays (1 when both are empty)."""
    total = float(prediction.sum() + truth.sum())
    return 2.0 * float((prediction & truth).sum()) / total if total else 1.0


def ring(foreground: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` 4-connected steps of the boundary of ``foreground`` ``(H, W)``, on either side."""
    if radius <= 0:
        return np.zeros(foreground.shape, dtype=bool)
    grown = ndimage.binary_dilation(foreground, _CROSS, iterations=radius)
    shrunk = ndimage.binary_erosion(foreground, _CROSS, iterations=radius, border_value=1)
    return grown & ~shrunk


def intensity_log_ratio(
    guides: Sequence[tuple[np.ndarray, np.ndarray]], band: int = 4, bins: int = 64, smooth: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``log p(I | object) - log p(I | background)`` from the guides' pixels within ``band`` of their masks' edges.

    Args:
        guides: ``(grey image, boolean mask)`` pairs, each ``(H, W)``.
        band: ring radius around the annotated boundaries whose pixels are counted.
        bins: histogram bins between the 0.1 and 99.9 percentiles of those pixels.
        smooth: Gaussian smoothing of the histograms, in bins.

    Returns:
        ``(edges, log_ratio)``: ``(bins + 1,)`` bin edges and ``(bins,)`` log density ratios (values outside the
        edges fall in the end bins).
    """
    fg, bg = _band_pixels(guides, band)
    low, high = np.percentile(np.concatenate((fg, bg)), [0.1, 99.9])
    high = max(float(high), float(low) + 1e-3)
    edges = np.linspace(low, high, bins + 1)

    def density(values: np.ndarray) -> np.ndarray:
        counts = np.bincount(_bin(values, edges), minlength=bins).astype(np.float64)
        counts = ndimage.gaussian_filter1d(counts, smooth, mode="nearest") if smooth > 0 else counts
        return (counts + 0.5) / (counts.sum() + 0.5 * bins)

    return edges, np.log(density(fg) / density(bg))


def _band_pixels(guides: Sequence[tuple[np.ndarray, np.ndarray]], band: int) -> tuple[np.ndarray, np.ndarray]:
    """Guide intensities within ``band`` of the masks' edges: ``(inside, outside)``."""
    inside, outside = [], []
    for image, mask in guides:
        near = ring(mask, band)
        inside.append(np.asarray(image, dtype=np.float32)[near & mask])
        outside.append(np.asarray(image, dtype=np.float32)[near & ~mask])
    fg, bg = np.concatenate(inside), np.concatenate(outside)
    if fg.size == 0 or bg.size == 0:
        raise Propagate2DError("the guide masks have no boundary: cannot learn object and background intensities.")
    return fg, bg


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


@dataclass(frozen=True)
class RingRefinement:
    """Intensity refinement of a thresholded foreground in a ring around its boundary.

    Attributes:
        edges: ``(bins + 1,)`` intensity bin edges; log_ratio: ``(bins,)`` intensity log density ratios.
        radius: ring radius in pixels (0: no refinement).
        weight: weight of the network's log odds against the intensity's.
        threshold: the network's foreground probability threshold.
        guide_dice: pixel Dice on the guides ``(network, refined)``, when calibrated.
        intensity_accuracy: balanced accuracy of the intensity alone on the guides' boundary band, when calibrated.
    """

    edges: np.ndarray
    log_ratio: np.ndarray
    radius: int
    weight: float
    threshold: float = 0.5
    guide_dice: tuple[float, float] | None = None
    intensity_accuracy: float | None = None

    def score(self, probability: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Combined log odds ``weight * (logit(p) - logit(threshold)) + log_ratio(I)``, same shape as the inputs."""
        p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
        logit = np.clip(np.log(p / (1 - p)), -_MAX_LOGIT, _MAX_LOGIT)
        offset = np.log(self.threshold / (1 - self.threshold))
        return self.weight * (logit - offset) + self.log_ratio[_bin(np.asarray(image), self.edges)]

    def __call__(self, probability: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Refined foreground ``(H, W)`` bool of a probability and an image, both ``(H, W)``."""
        foreground = np.asarray(probability) > self.threshold
        return self.refine_rows(foreground, probability, image, 0, foreground.shape[0])

    def refine_rows(
        self, foreground: np.ndarray, probability: np.ndarray, image: np.ndarray, first: int, stop: int
    ) -> np.ndarray:
        """Refined rows ``first:stop`` of a block of rows.

        Args:
            foreground: ``(H, W)`` network foreground of the block (rows outside ``first:stop`` are the halo).
            probability: ``(H, W)`` network probability of the block.
            image: ``(stop - first, W)`` image rows ``first:stop`` of the block.
            first, stop: the rows to return.
        """
        out = foreground[first:stop].copy()
        if self.radius <= 0:
            return out
        band = ring(foreground, self.radius)[first:stop]
        if band.any():
            out[band] = self.score(probability[first:stop][band], image[band]) > 0
        return out


def calibrate_ring_refinement(
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    probabilities: Sequence[np.ndarray],
    threshold: float = 0.5,
    radii: Sequence[int] = (1, 2, 3, 4),
    weights: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    min_gain: float = 0.002,
    min_accuracy: float = 0.75,
    tolerance: float = 5e-4,
) -> RingRefinement:
    """Pick the ring radius and the network's weight that give the highest pixel Dice on the guides.

    Args:
        guides: ``(grey image, boolean mask)`` pairs.
        probabilities: the network's foreground probability of each guide image (same shapes).
        threshold: the network's threshold.
        radii, weights: the grid searched. Radii above a quarter of the median annotated instance side are left out.
        min_gain: least rise of the guides' Dice for the refinement to be used (else ``radius = 0``).
        min_accuracy: least balanced accuracy of the intensity alone (``log_ratio > 0``) on the guides' boundary
            band for the refinement to be used: an uninformative intensity only makes the boundary ragged, even
            where that happens to raise the Dice of an over-segmenting network.
        tolerance: settings within this Dice of the best count as equal; the smallest radius and the largest
            weight among them win (the least change to the network's output).
    """
    if len(probabilities) != len(guides):
        raise Propagate2DError(f"{len(guides)} guides but {len(probabilities)} guide probabilities.")
    sides = []
    for _, mask in guides:
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sides += [max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in ndimage.find_objects(labels) if b]
    limit = max(1, int(np.median(sides) // 4)) if sides else 1
    radii = sorted({int(r) for r in radii if 0 < r <= limit}) or [1]
    edges, log_ratio = intensity_log_ratio(guides, band=max(radii) + 1)
    fg, bg = _band_pixels(guides, max(radii) + 1)
    accuracy = 0.5 * float(np.mean(log_ratio[_bin(fg, edges)] > 0) + np.mean(log_ratio[_bin(bg, edges)] <= 0))
    truth = np.concatenate([mask.ravel() for _, mask in guides])
    network = np.concatenate([(np.asarray(p) > threshold).ravel() for p in probabilities])
    base = dice(network, truth)
    results = []  # (dice, -radius, weight)
    for radius in radii:
        for weight in weights:
            candidate = RingRefinement(edges, log_ratio, radius, float(weight), threshold)
            refined = np.concatenate([candidate(p, image).ravel() for (image, _), p in zip(guides, probabilities)])
            results.append((dice(refined, truth), -radius, float(weight)))
    best = max(r[0] for r in results)
    pick = max((r for r in results if r[0] >= best - tolerance), key=lambda r: (r[1], r[2]))
    score, radius, weight = pick[0], -pick[1], pick[2]
    if score < base + min_gain or accuracy < min_accuracy:
        radius = 0
    return RingRefinement(edges, log_ratio, radius, weight, threshold, (base, score), accuracy)


def guide_refinement(
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    network: torch.nn.Module,
    picked: InstanceGuides,
    batch_size: int = 8,
    fusion: str = "joint",
    threshold: float = 0.5,
) -> RingRefinement:
    """The network's probability over each whole guide image (the same windows and guide crops as the target's),
    then :func:`calibrate_ring_refinement` on the guides.

    Args:
        guides: ``(grey image, boolean mask)`` pairs.
        network: PropMask, in eval mode.
        picked: the guide crops and windows, from :func:`pam_monai.images2d.sliding2d.instance_guides`.
        batch_size, fusion: as for :func:`pam_monai.images2d.sliding2d.stitch_probability`.
        threshold: the network's foreground threshold.
    """
    probabilities = []
    for image, _ in guides:
        probability = np.zeros(image.shape, dtype=np.float32)

        def keep(top: int, band: np.ndarray, out: np.ndarray = probability) -> None:
            out[top : top + band.shape[0]] = band

        stitch_probability(ArrayRegionReader(image), network, picked, keep, batch_size, False, fusion)
        probabilities.append(probability)
    return calibrate_ring_refinement(guides, probabilities, threshold)


class RefiningStream:
    """Refine consecutive full-width bands of probability rows as they arrive, keeping a halo of ``radius`` rows.

    Args:
        refinement: the refinement (``radius = 0`` passes the thresholded rows straight on).
        read_rows: ``read_rows(first, stop)`` gives image rows ``first:stop``, ``(stop - first, W)``.
        emit: called as ``emit(first_row, foreground_rows)`` with consecutive refined boolean bands.
        height: the image's height in rows.
    """

    def __init__(
        self,
        refinement: RingRefinement,
        read_rows: Callable[[int, int], np.ndarray],
        emit: Callable[[int, np.ndarray], None],
        height: int,
    ) -> None:
        self.refinement, self.read_rows, self.emit, self.height = refinement, read_rows, emit, height
        self.buffer: np.ndarray | None = None  # probability rows buffer_start .. buffer_start + len(buffer)
        self.buffer_start = 0
        self.done = 0  # rows emitted so far

    def push(self, top: int, probability: np.ndarray) -> None:
        """Take probability rows ``top : top + len(probability)`` (consecutive with the previous push)."""
        if top != self.buffer_start + (0 if self.buffer is None else len(self.buffer)):
            raise Propagate2DError(f"probability rows arrived out of order (row {top}).")
        rows = np.asarray(probability, dtype=np.float32)
        self.buffer = rows.copy() if self.buffer is None else np.concatenate((self.buffer, rows))
        end = top + len(rows)
        self._flush(end if end >= self.height else end - self.refinement.radius)

    def _flush(self, stop: int) -> None:
        if stop <= self.done or self.buffer is None:
            return
        radius = self.refinement.radius
        first = self.done - self.buffer_start
        foreground = self.buffer > self.refinement.threshold
        image = self.read_rows(self.done, stop) if radius > 0 else None
        refined = self.refinement.refine_rows(foreground, self.buffer, image, first, stop - self.buffer_start)
        self.emit(self.done, refined)
        self.done = stop
        keep_from = max(stop - radius, self.buffer_start)
        self.buffer = self.buffer[keep_from - self.buffer_start :]
        self.buffer_start = keep_from
