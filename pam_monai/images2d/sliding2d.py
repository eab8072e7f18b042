"""Propagation over one large 2D image: sliding windows guided by annotated instances, then instance labels.

* Window side (image pixels): ``window_scale`` x the median bounding-box side of the annotated instances,
  rounded up to a multiple of 32 and clamped to ``[input_size, 4 * input_size]``. With the default scale 2 and
  a half-window stride every instance of median size lies wholly inside at least one window.
* Guides: one crop of the window size centred on each annotated instance (at most ``max_guides``, spread over
  the range of instance areas), carrying the annotation inside the crop, so query windows and guides show
  objects at the same scale.
* Windows are processed one row of windows at a time by MONAI's ``PatchInferer`` (``SlidingWindowSplitter`` along
  the row, ``AvgMerger`` averaging overlapping windows); the rows are averaged where they overlap in a buffer one
  window high, and every finished band of rows is handed on. Memory is O(window x image width), whatever the image
  height.
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

from pam_monai.images2d.set2d import GuideBatch, guided_probability, pooled_guide_window, prepare_guides, resize
from pam_monai.transforms.intensity import apply_window

__all__ = [
    "InstanceGuides",
    "choose_window",
    "instance_guides",
    "label_instances",
    "stitch_probability",
    "window_starts",
]

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class InstanceGuides:
    """Guides cut around annotated instances.

    Attributes:
        batch: the network-ready guides.
        window: sliding-window side in image pixels.
        median_side: median bounding-box side of the annotated instances (pixels).
        median_area: median area of the annotated instances (pixels).
        instances: annotated instances found in all guide masks.
    """

    batch: GuideBatch
    window: int
    median_side: float
    median_area: float
    instances: int


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


def _crop(array: np.ndarray, top: int, left: int, side: int, fill: float) -> np.ndarray:
    out = np.full((side, side), fill, dtype=np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + side, array.shape[0]), min(left + side, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def instance_guides(
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    input_size: int,
    window: int | None = None,
    max_guides: int = 8,
    window_scale: float = 2.0,
    device: torch.device | str = "cpu",
) -> InstanceGuides:
    """Cut one window-sized crop around each annotated instance (8-connected component) of checked guides."""
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
    side = int(window) if window else choose_window(median_side, input_size, window_scale)
    found.sort(key=lambda f: f[0])
    picks = np.unique(np.round(np.linspace(0, len(found) - 1, min(max_guides, len(found)))).astype(int))
    crops = []
    for _, _, g, (r0, c0, r1, c1) in (found[i] for i in picks):
        image, mask = guides[g]
        top, left = (r0 + r1 - side) // 2, (c0 + c1 - side) // 2
        crops.append((_crop(image, top, left, side, lo_hi[0]), _crop(mask, top, left, side, 0.0) > 0))
    batch = prepare_guides(crops, input_size, window=lo_hi, device=device)
    return InstanceGuides(batch, side, median_side, median_area, len(found))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """``0, stride, 2 * stride, ...`` until a window reaches the end (the last one may overhang)."""
    starts = [0]
    while starts[-1] + window < length:
        starts.append(starts[-1] + stride)
    return starts


def _coverage(length: int, starts: Sequence[int], window: int) -> np.ndarray:
    change = np.zeros(length + 1, dtype=np.int64)
    for s in starts:
        change[min(s, length)] += 1
        change[min(s + window, length)] -= 1
    return np.cumsum(change[:-1]).astype(np.float32)


class _Region:
    """What :func:`stitch_probability` needs of an image: ``shape`` and ``read(top, left, h, w, fill)``."""

    shape: tuple[int, int]

    def read(self, top: int, left: int, height: int, width: int, fill: float = 0.0) -> np.ndarray: ...


class _WindowProbability:
    """The guided foreground probability of raw image windows ``(B, 1, side, side)``, at their own size, on CPU."""

    def __init__(self, network: torch.nn.Module, guides: GuideBatch, side: int) -> None:
        self.network, self.guides, self.side = network, guides, side

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        batch = self.guides
        queries = apply_window(resize(windows, batch.size), *batch.window)
        probability = guided_probability(self.network, batch, queries)
        return resize(probability[:, None].float(), self.side).clamp(0, 1).cpu()


@torch.inference_mode()
def stitch_probability(
    reader: _Region,
    network: torch.nn.Module,
    guides: InstanceGuides,
    emit: Callable[[int, np.ndarray], None],
    batch_size: int = 8,
    progress: bool = False,
) -> None:
    """Sliding-window foreground probability, averaged where windows overlap, emitted band by band.

    Windows of side ``guides.window`` at half-window strides (the last one of a row or column may overhang the
    image, filled with the guides' window low value). Each row of windows is one full-width band read from
    ``reader`` and run through MONAI's ``PatchInferer`` (``SlidingWindowSplitter`` along the band, ``AvgMerger``
    averaging the overlaps); consecutive bands are averaged where they overlap, and every finished band of rows is
    handed on, so memory stays O(window x image width) whatever the image height.

    Args:
        reader: the image, read region by region.
        network: PropMask (``forward_indexed``).
        guides: from :func:`instance_guides`.
        emit: called as ``emit(first_row, probability_rows)`` with consecutive, complete full-width bands
            (float32 ``(rows, width)``).
        batch_size: windows per forward pass (each paired with every guide).
        progress: show a progress bar (stderr).
    """
    height, width = reader.shape
    side, batch = guides.window, guides.batch
    stride = max(1, side // 2)
    tops, lefts = window_starts(height, side, stride), window_starts(width, side, stride)
    rows_covered = _coverage(height, tops, side)
    band_width = lefts[-1] + side
    inferer = PatchInferer(
        splitter=SlidingWindowSplitter(patch_size=(side, side), overlap=(0, side - stride), pad_mode=None),
        merger_cls=AvgMerger,
        batch_size=batch_size,
    )
    probability = _WindowProbability(network, batch, side)
    total = np.zeros((side, band_width), dtype=np.float32)
    bar = tqdm(total=len(tops) * len(lefts), disable=not progress, unit="window", desc="windows")
    try:
        for k, top in enumerate(tops):
            region = reader.read(top, 0, side, band_width, fill=batch.window[0])
            band = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32))[None, None]
            total += inferer(band, probability)[0, 0].numpy()
            bar.update(len(lefts))
            end = height if k == len(tops) - 1 else min(top + stride, height)
            if end > top:
                emit(top, total[: end - top, :width] / rows_covered[top:end, None])
            total[: side - stride] = total[stride:]
            total[side - stride :] = 0.0
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
