"""Propagation over one large 2D image: sliding windows guided by annotated instances, then instance labels.

* Guide crops: one crop centred on each annotated instance (at most ``max_guides``, spread over the range of
  instance areas), carrying the annotation inside the crop; their side is ``window_scale`` x the median
  bounding-box side of the instances, rounded up to a multiple of 32 and clamped to ``[input_size,
  4 * input_size]``, and is resized to the network's input size. Crops reaching past the guide image are
  mirrored (image and mask alike).
* Query windows: ``query_factor`` x the guide crop side (default 2), at the guides' scale. PropMask is
  convolutional and its cross-attention has no positional encoding, so a window larger than the network's input
  is segmented whole; only the image encoder's work grows with it, and fewer windows overlap.
* Window borders: the network misses objects near a window's edge (the guide crops show their object in the
  middle), so every window's probability is weighted by a profile that is 1 beyond ``border`` pixels from its
  edge and falls to 0.001 at half that; windows start ``border`` pixels before the image (mirrored) and step by
  ``window - 2 * border``, so every pixel lies in the full-weight part of some window.
* Guides are fused in the cross-attention (``fusion="joint"``: every query attends to the tokens of all guides in
  one softmax, one decoder pass per window) or by averaging the probability of each guide (``"mean"``).
* Windows are processed one row of windows at a time by MONAI's ``PatchInferer`` (``SlidingWindowSplitter`` along
  the row, ``AvgMerger``); weighted sums are carried in a buffer one window high and every finished band of rows is
  handed on. Memory is O(window x image width), whatever the image height.
* Instances: threshold, morphological opening, 8-connected components, labelled strip by strip (the opening
  sees a halo of neighbouring rows, so strips give exactly the whole-image result) and merged across strips.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import AvgMerger, PatchInferer, SlidingWindowSplitter
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from pam_monai.errors import Propagate2DError
from pam_monai.images2d.set2d import (
    GuideBatch,
    GuideFeatures,
    encode_guides,
    guided_probability,
    pooled_guide_window,
    prepare_guides,
    resize,
)
from pam_monai.transforms.intensity import apply_window

__all__ = [
    "FUSIONS",
    "InstanceGuides",
    "border_profile",
    "choose_window",
    "instance_guides",
    "label_instances",
    "stitch_probability",
    "window_starts",
]

_EIGHT = np.ones((3, 3), dtype=bool)
FUSIONS = ("joint", "mean")
_NETWORK_STEP = 32  # query sides the network sees are multiples of its downsampling factor


@dataclass
class InstanceGuides:
    """Guides cut around annotated instances, and the sliding windows they were sized for.

    Attributes:
        batch: the network-ready guides.
        window: query window side in image pixels.
        median_side: median bounding-box side of the annotated instances (pixels).
        median_area: median area of the annotated instances (pixels).
        instances: annotated instances found in all guide masks.
        guide_side: guide crop side in image pixels (shown to the network at ``batch.size``; default ``window``).
        border: pixels at each window edge that are weighted down (default 0: plain averaging).
    """

    batch: GuideBatch
    window: int
    median_side: float
    median_area: float
    instances: int
    guide_side: int | None = None
    border: int = 0

    @property
    def stride(self) -> int:
        return max(1, self.window - 2 * self.border) if self.border else max(1, self.window // 2)

    @property
    def query_size(self) -> int:
        """Side of the query windows as the network sees them (guides' scale, a multiple of 32)."""
        scale = self.batch.size / (self.guide_side or self.window)
        return int(_NETWORK_STEP * max(1, math.ceil(self.window * scale / _NETWORK_STEP - 1e-6)))


def choose_window(
    median_side: float,
    input_size: int,
    scale: float = 2.0,
    min_window: int | None = None,
    max_window: int | None = None,
) -> int:
    """``scale x median_side`` rounded up to a multiple of 32, clamped to ``[min_window, max_window]``.

    Defaults: ``min_window = input_size`` (no window is upsampled), ``max_window = 4 * input_size``.
    """
    low = min_window or input_size
    high = max(low, max_window or 4 * input_size)
    side = 32 * math.ceil(scale * median_side / 32)
    return int(min(max(side, low), high))


def _mirrored(array: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The ``height x width`` region at ``(top, left)``, mirrored (``symmetric``) where it leaves the array."""
    r0, c0 = min(max(top, 0), array.shape[0] - 1), min(max(left, 0), array.shape[1] - 1)
    r1, c1 = max(min(top + height, array.shape[0]), r0 + 1), max(min(left + width, array.shape[1]), c0 + 1)
    block = np.asarray(array[r0:r1, c0:c1], dtype=np.float32)
    pad = ((r0 - top, top + height - r1), (c0 - left, left + width - c1))
    out = np.pad(block, tuple((max(a, 0), max(b, 0)) for a, b in pad), mode="symmetric")
    return out[max(-pad[0][0], 0) : max(-pad[0][0], 0) + height, max(-pad[1][0], 0) : max(-pad[1][0], 0) + width]


def instance_guides(
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    input_size: int,
    window: int | None = None,
    max_guides: int = 2,
    window_scale: float = 2.0,
    device: torch.device | str = "cpu",
    *,
    query_factor: int = 2,
    border: int | None = None,
) -> InstanceGuides:
    """Cut one crop around each annotated instance (8-connected component) of checked guides.

    Args:
        guides: checked ``(grey image, boolean mask)`` pairs.
        input_size: the network's input side.
        window: query window side in image pixels (default ``query_factor`` x the guide crop side).
        max_guides: most guide crops, spread over the range of instance areas.
        window_scale: guide crop side relative to the median instance side.
        device: where the guides go.
        query_factor: default query window relative to the guide crop side.
        border: down-weighted pixels at each window edge (default a quarter of the guide crop side, at most a
            quarter of the window).
    """
    lo_hi = pooled_guide_window(guides)
    found = []  # (area, side, guide index, (r0, c0, r1, c1))
    for g, (_, mask) in enumerate(guides):
        labels, _ = ndimage.label(mask, structure=_EIGHT)
        areas = np.bincount(labels.ravel())
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                r0, r1, c0, c1 = box[0].start, box[0].stop, box[1].start, box[1].stop
                found.append((int(areas[i]), max(r1 - r0, c1 - c0), g, (r0, c0, r1, c1)))
    median_side = float(np.median([f[1] for f in found]))
    median_area = float(np.median([f[0] for f in found]))
    side = choose_window(median_side, input_size, window_scale)
    window = int(window) if window else query_factor * side
    border = min(side // 4, window // 4) if border is None else int(border)
    if not 0 <= border < window / 2:
        raise Propagate2DError(f"the window border must be in [0, window / 2), got {border} for window {window}.")
    found.sort(key=lambda f: f[0])
    picks = np.unique(np.round(np.linspace(0, len(found) - 1, min(max_guides, len(found)))).astype(int))
    crops = []
    for _, _, g, (r0, c0, r1, c1) in (found[i] for i in picks):
        image, mask = guides[g]
        top, left = (r0 + r1 - side) // 2, (c0 + c1 - side) // 2
        crops.append((_mirrored(image, top, left, side, side), _mirrored(mask, top, left, side, side) > 0))
    batch = prepare_guides(crops, input_size, window=lo_hi, device=device)
    return InstanceGuides(batch, window, median_side, median_area, len(found), guide_side=side, border=border)


def window_starts(length: int, window: int, stride: int, border: int = 0) -> list[int]:
    """``-border, -border + stride, ...`` until a window's inner part (``border`` short of its end) reaches the end."""
    starts = [-border]
    while starts[-1] + window - border < length:
        starts.append(starts[-1] + stride)
    return starts


def border_profile(side: int, border: int, floor: float = 1e-3) -> np.ndarray:
    """Per-pixel weight across a window: 1 from ``border`` pixels off its edges inwards, a linear ramp from
    ``floor`` at ``border / 2``; all ones without a border."""
    if border <= 0:
        return np.ones(side, dtype=np.float32)
    distance = np.minimum(np.arange(side), side - 1 - np.arange(side)) + 0.5
    return np.clip((distance - border / 2) / (border / 2), floor, 1.0).astype(np.float32)


class _Region:
    """What :func:`stitch_probability` needs of an image: ``shape`` and ``read(top, left, h, w, fill)``."""

    shape: tuple[int, int]

    def read(self, top: int, left: int, height: int, width: int, fill: float = 0.0) -> np.ndarray: ...


class _Mirror:
    """Regions of a :class:`_Region` mirrored where they leave the image (indexable like an array)."""

    def __init__(self, reader: _Region) -> None:
        self.reader, self.shape = reader, reader.shape

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        return self.reader.read(rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)


class _WindowProbability:
    """Weighted guided foreground probability of raw windows ``(B, 1, side, side)``: ``(B, 2, side, side)``
    holding ``weight x probability`` and ``weight``, on CPU."""

    def __init__(self, network: torch.nn.Module, guides: InstanceGuides, fusion: str) -> None:
        if fusion not in FUSIONS:
            raise Propagate2DError(f"unknown guide fusion {fusion!r}; choose one of {', '.join(FUSIONS)}.")
        self.network, self.guides = network, guides
        features: GuideFeatures | None = encode_guides(network, guides.batch)
        self.features = features.joined() if features is not None and fusion == "joint" else features
        self.size = guides.query_size if features is not None else guides.batch.size
        profile = torch.from_numpy(border_profile(guides.window, guides.border))
        self.weight = (profile[:, None] * profile[None, :])[None, None]

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        batch, side = self.guides.batch, self.guides.window
        queries = apply_window(resize(windows, self.size), *batch.window)
        probability = guided_probability(self.network, batch, queries, self.features)
        probability = resize(probability[:, None].float(), side).clamp(0, 1).cpu()
        weight = self.weight.expand_as(probability)
        return torch.cat((probability * weight, weight), dim=1)


@torch.inference_mode()
def stitch_probability(
    reader: _Region,
    network: torch.nn.Module,
    guides: InstanceGuides,
    emit: Callable[[int, np.ndarray], None],
    batch_size: int = 8,
    progress: bool = False,
    fusion: str = "joint",
) -> None:
    """Sliding-window foreground probability, a weighted average where windows overlap, emitted band by band.

    Windows of side ``guides.window`` start ``guides.border`` pixels before the image and step by
    ``guides.stride``; outside the image they see it mirrored. Each window's probability is weighted by
    :func:`border_profile` in both directions. Each row of windows is one full-width band read from ``reader``
    and run through MONAI's ``PatchInferer`` (``SlidingWindowSplitter`` along the band, ``AvgMerger``); the
    weighted sums of consecutive bands are added up and every finished band of rows is handed on, so memory stays
    O(window x image width) whatever the image height.

    Args:
        reader: the image, read region by region.
        network: PropMask (its parts, or anything with ``forward_indexed`` at the guides' size).
        guides: from :func:`instance_guides`.
        emit: called as ``emit(first_row, probability_rows)`` with consecutive, complete full-width bands
            (float32 ``(rows, width)``).
        batch_size: windows per forward pass.
        progress: show a progress bar (stderr).
        fusion: ``"joint"`` (one decoder pass per window, attending to all guides) or ``"mean"`` (the average of
            the probabilities given by each guide).
    """
    height, width = reader.shape
    side, stride, border = guides.window, guides.stride, guides.border
    tops, lefts = window_starts(height, side, stride, border), window_starts(width, side, stride, border)
    band_width = lefts[-1] + side + border
    inferer = PatchInferer(
        splitter=SlidingWindowSplitter(patch_size=(side, side), overlap=(0, side - stride), pad_mode=None),
        merger_cls=AvgMerger,
        batch_size=batch_size,
    )
    probability = _WindowProbability(network, guides, fusion)
    mirror = _Mirror(reader)
    total = np.zeros((2, side, band_width), dtype=np.float32)  # weighted probability, weight
    next_row = 0
    bar = tqdm(total=len(tops) * len(lefts), disable=not progress, unit="window", desc="windows")
    try:
        for k, top in enumerate(tops):
            band = torch.from_numpy(np.ascontiguousarray(_mirrored(mirror, top, -border, side, band_width)))
            total += inferer(band[None, None], probability)[0].numpy()
            bar.update(len(lefts))
            end = height if k == len(tops) - 1 else min(top + stride, height)
            if end > next_row:
                rows = slice(next_row - top, end - top)
                emit(next_row, total[0, rows, border : border + width] / total[1, rows, border : border + width])
                next_row = end
            total[:, : side - stride] = total[:, stride:]
            total[:, side - stride :] = 0.0
    finally:
        bar.close()


def _disk(radius: int) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    return grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2


def label_instances(
    foreground: np.ndarray,
    provisional: np.ndarray,
    opening_radius: int = 1,
    min_area: float = 0.0,
    strip_rows: int | None = None,
) -> tuple[np.ndarray, int]:
    """Separate instances strip by strip: opening, 8-connected components, merged across strip borders.

    Args:
        foreground: ``(H, W)`` binary array (may be a memory map); read a strip (plus halo) at a time.
        provisional: ``(H, W)`` int32 array (may be a memory map) that receives provisional labels.
        opening_radius: disk radius of the morphological opening (0: none).
        min_area: components smaller than this (pixels) are dropped.
        strip_rows: rows per strip (default: about 16 M pixels per strip).

    Returns:
        ``(lut, count)``: ``lut[provisional]`` is the final label image (instances numbered 1..count in raster
        order of their first pixel, dropped ones 0).
    """
    height, width = foreground.shape
    halo = 2 * opening_radius
    strip = strip_rows or max(256, (1 << 24) // max(width, 1))
    structure = _disk(opening_radius) if opening_radius > 0 else None
    areas: list[np.ndarray] = []
    edges: list[np.ndarray] = []
    offset, previous = 0, None
    for r0 in range(0, height, strip):
        r1 = min(r0 + strip, height)
        a0, a1 = max(r0 - halo, 0), min(r1 + halo, height)
        block = np.asarray(foreground[a0:a1]).astype(bool)
        if structure is not None:
            block = ndimage.binary_opening(block, structure=structure)
        labels, count = ndimage.label(block[r0 - a0 : r1 - a0], structure=_EIGHT)
        labels = labels.astype(np.int32)
        areas.append(np.bincount(labels.ravel(), minlength=count + 1)[1:])
        labels[labels > 0] += offset
        if previous is not None:
            for d in (-1, 0, 1):
                upper = previous[max(0, -d) : width - max(0, d)]
                lower = labels[0, max(0, d) : width - max(0, -d)]
                touching = (upper > 0) & (lower > 0)
                if touching.any():
                    edges.append(np.unique(np.stack((upper[touching], lower[touching]), axis=1), axis=0))
        provisional[r0:r1] = labels
        previous = labels[-1].copy()
        offset += count
    if offset == 0:
        return np.zeros(1, dtype=np.int64), 0
    pairs = np.concatenate(edges) - 1 if edges else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(offset, offset))
    n_components, component = connected_components(graph, directed=False)
    component_area = np.bincount(component, weights=np.concatenate(areas), minlength=n_components)
    ids, first = np.unique(component, return_index=True)  # first provisional label = first pixel in raster order
    kept = ids[component_area[ids] >= min_area]
    kept = kept[np.argsort(first[np.searchsorted(ids, kept)], kind="stable")]
    final = np.zeros(n_components, dtype=np.int64)
    final[kept] = np.arange(1, len(kept) + 1)
    return np.concatenate(([0], final[component])), len(kept)
