"""PNG previews: the prompt slice and a few propagated slices with the segmentation's contour over the image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from pam_monai.data.io import write_atomic

__all__ = ["preview_slices", "save_preview"]

COLOURS = np.array(
    [[255, 60, 60], [60, 220, 60], [70, 130, 255], [255, 200, 0], [220, 80, 255], [0, 220, 220]], dtype=np.uint8
)


def preview_slices(labels: np.ndarray, axis: int, prompt_slices: list[int], count: int = 5) -> list[int]:
    """The prompt slice(s) plus slices spread over the segmented extent, sorted."""
    covered = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    chosen = set(prompt_slices)
    if len(covered):
        chosen.update(int(round(v)) for v in np.linspace(covered[0], covered[-1], count))
    return sorted(chosen) or [labels.shape[axis] // 2]


def _grey(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane, (0.5, 99.5))
    scaled = np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=-1)


def save_preview(
    image: np.ndarray,
    labels: np.ndarray,
    axis: int,
    prompt_slices: list[int],
    path: str | os.PathLike,
    tile: int = 256,
) -> Path:
    """Write a PNG strip of slices normal to ``axis`` with contours (one colour per label), prompt slice first."""
    tiles = []
    for index in preview_slices(labels, axis, prompt_slices):
        # Rows are the first in-plane axis; transpose so it shows like a radiological viewer (j down, i across).
        plane = np.take(image, index, axis=axis).T
        label_plane = np.take(labels, index, axis=axis).T
        rgb = _grey(plane.astype(np.float32))
        for value in np.unique(label_plane[label_plane > 0]):
            region = label_plane == value
            contour = region & ~ndimage.binary_erosion(region)
            rgb[contour] = COLOURS[(int(value) - 1) % len(COLOURS)]
        picture = Image.fromarray(rgb[::-1])
        scale = tile / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.NEAREST
        )
        if index in prompt_slices:
            framed = Image.new("RGB", (picture.width + 6, picture.height + 6), (255, 200, 0))
            framed.paste(picture, (3, 3))
            picture = framed
        tiles.append(picture)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)))
    x = 0
    for picture in tiles:
        strip.paste(picture, (x, 0))
        x += picture.width + 4
    return write_atomic(path, lambda temporary: strip.save(temporary, format="PNG"))
