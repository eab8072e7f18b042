"""PNG previews: the prompt slice and slices across the object, cropped around it and enlarged, with the prompt's
contour and the result's in two colours and a caption per tile."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pam_monai.data.io import write_atomic

__all__ = ["PROMPT_COLOUR", "RESULT_COLOURS", "crop_box", "preview_slices", "save_preview"]

RESULT_COLOURS = np.array(
    [[255, 60, 60], [60, 220, 60], [70, 130, 255], [255, 140, 0], [220, 80, 255], [0, 220, 220]], dtype=np.uint8
)
"""Result contour colour of label 1, 2, ... (cycled)."""

PROMPT_COLOUR = np.array([255, 230, 0], dtype=np.uint8)
"""Contour colour of the prompt (the drawn mask, or Box2Mask's mask for a box) on its slice."""

CAPTION_HEIGHT = 24


def preview_slices(labels: np.ndarray, axis: int, prompt_slices: Sequence[int], count: int = 5) -> list[int]:
    """The prompt slice(s) plus ``count`` slices spread over the segmented extent along ``axis``, sorted."""
    covered = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    chosen = {int(s) for s in prompt_slices}
    if len(covered):
        chosen.update(int(round(v)) for v in np.linspace(covered[0], covered[-1], count))
    return sorted(chosen) or [labels.shape[axis] // 2]


def crop_box(
    masks: Sequence[np.ndarray], shape: tuple[int, int], margin: float = 0.2, min_size: int = 48
) -> tuple[int, int, int, int]:
    """A square ``(r0, c0, r1, c1)`` window (end exclusive) of a ``shape`` plane around the union of the ``(H, W)``
    ``masks``, ``margin`` times the object's size larger on each side, at least ``min_size`` pixels wide, clipped
    to the plane; the whole plane when every mask is empty."""
    union = np.zeros(shape, bool)
    for mask in masks:
        union |= mask.astype(bool)
    if not union.any():
        return 0, 0, shape[0], shape[1]
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    side = min(max(int(round(side * (1 + 2 * margin))), min_size), max(shape))
    centre_r, centre_c = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    box = []
    for centre, size in ((centre_r, shape[0]), (centre_c, shape[1])):
        extent = min(side, size)
        start = int(round(centre - extent / 2))
        start = min(max(start, 0), size - extent)
        box.append((start, start + extent))
    return box[0][0], box[1][0], box[0][1], box[1][1]


def _grey(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    scaled = np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1)
    return (scaled * 255).astype(np.uint8)


def _window(planes: Sequence[np.ndarray]) -> tuple[float, float]:
    """One grey window for every tile: the 0.5 and 99.5 percentiles of the shown slices, whole (not cropped)."""
    values = np.concatenate([p[np.isfinite(p)].ravel() for p in planes])
    if not values.size:
        return 0.0, 1.0
    lo, hi = np.percentile(values, (0.5, 99.5))
    return float(lo), float(hi)


def _outline(mask: np.ndarray, width: int, outside: bool = False) -> np.ndarray:
    """The ``width`` pixels just inside ``mask``'s edge, or just outside it: a prompt drawn outside and a result
    drawn inside stay both visible where they agree."""
    if outside:
        return ndimage.binary_dilation(mask, iterations=width) & ~mask
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)


def _show(plane: np.ndarray) -> np.ndarray:
    """A plane with rows the first in-plane axis, as a radiological viewer shows it (j up, i across)."""
    return plane.T[::-1]


def save_preview(
    image: np.ndarray,
    labels: np.ndarray,
    axis: int,
    prompt_slices: Sequence[int],
    path: str | os.PathLike,
    tile: int = 256,
    *,
    guides: Mapping[int, Mapping[int, np.ndarray]] | None = None,
    count: int = 5,
) -> Path:
    """Write a PNG row of tiles, one per slice normal to ``axis`` (the prompt slices and ``count`` slices across the
    object), each cropped to the same window around the object and enlarged to ``tile`` pixels, with the result's
    contour just inside its edge (:data:`RESULT_COLOURS`, one colour per label) and, on prompt slices, the prompt's
    just outside (:data:`PROMPT_COLOUR`), and a caption below: the slice index, ``prompt`` on prompt slices.

    Args:
        image: ``(X, Y, Z)`` intensities.
        labels: ``(X, Y, Z)`` result labels.
        axis: the array axis the slices are normal to.
        prompt_slices: prompt slice indices along ``axis`` (framed and captioned).
        path: the PNG to write (atomically).
        tile: tile side in pixels.
        guides: per label, per prompt slice, the ``(H, W)`` prompt mask on that slice (contoured in the prompt
            colour); ``None``: no prompt contour.
        count: slices shown besides the prompt slices.
    """
    image, labels = np.asarray(image, dtype=np.float32), np.asarray(labels)
    prompt_set = {int(s) for s in prompt_slices}
    guides = {int(k): {int(s): np.asarray(m, bool) for s, m in v.items()} for k, v in (guides or {}).items()}
    prompt_set.update(s for per_label in guides.values() for s in per_label)
    slices = preview_slices(labels, axis, sorted(prompt_set), count)
    at = [slice(None)] * 3
    planes = {}
    for s in slices:  # basic indexing: views, not np.take's copies of the volume
        at[axis] = s
        planes[s] = (image[tuple(at)], labels[tuple(at)])
    in_plane = next(iter(planes.values()))[0].shape
    prompt_masks = [m for per_label in guides.values() for m in per_label.values()]
    r0, c0, r1, c1 = crop_box([p[1] > 0 for p in planes.values()] + prompt_masks, in_plane)
    scale = tile / max(r1 - r0, c1 - c0)
    size = (max(1, round((r1 - r0) * scale)), max(1, round((c1 - c0) * scale)))  # (rows, cols) before display
    width = max(2, round(scale / 2))
    window = _window([p[0] for p in planes.values()])
    font = ImageFont.load_default(size=15)
    tiles = []
    for index in slices:
        plane, label_plane = planes[index]
        grey = Image.fromarray(_show(_grey(plane[r0:r1, c0:c1], window))).resize((size[0], size[1]), Image.BILINEAR)
        rgb = np.repeat(np.asarray(grey)[..., None], 3, axis=-1)
        big_labels = np.asarray(
            Image.fromarray(_show(label_plane[r0:r1, c0:c1]).astype(np.int32)).resize((size[0], size[1]), Image.NEAREST)
        )
        for value in np.unique(big_labels[big_labels > 0]):
            rgb[_outline(big_labels == value, width)] = RESULT_COLOURS[(int(value) - 1) % len(RESULT_COLOURS)]
        for per_label in guides.values():
            if index in per_label:
                crop = _show(per_label[index][r0:r1, c0:c1]).astype(np.uint8)
                big = np.asarray(Image.fromarray(crop * 255).resize((size[0], size[1]), Image.NEAREST)) > 0
                rgb[_outline(big, width, outside=True)] = PROMPT_COLOUR
        picture = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + CAPTION_HEIGHT))
        picture.paste(Image.fromarray(rgb), (0, 0))
        is_prompt = index in prompt_set
        draw = ImageDraw.Draw(picture)
        caption = f"slice {index}" + (" - prompt" if is_prompt else "")
        draw.text(
            (6, rgb.shape[0] + 4), caption, fill=tuple(PROMPT_COLOUR) if is_prompt else (230, 230, 230), font=font
        )
        if is_prompt:
            draw.rectangle((0, 0, picture.width - 1, picture.height - 1), outline=tuple(PROMPT_COLOUR), width=2)
        tiles.append(picture)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)))
    x = 0
    for picture in tiles:
        strip.paste(picture, (x, 0))
        x += picture.width + 4
    return write_atomic(path, lambda temporary: strip.save(temporary, format="PNG"))
