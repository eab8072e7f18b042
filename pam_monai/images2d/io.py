"""2D images on disk: PNG, JPEG, TIFF and 2D NIfTI in memory, TIFF regions read lazily, BigTIFF written by tiles.

Large TIFFs are never decoded whole: uncompressed contiguous files are memory-mapped, others are read segment
(tile or strip) by segment through tifffile's ``TiffPage.decode``, keeping only a bounded cache of decoded
segments. Label images are written tile by tile to a tiled BigTIFF.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from pam_monai.data.io import ImageReadError, write_atomic
from pam_monai.errors import Propagate2DError

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "ArrayRegionReader",
    "TiffRegionReader",
    "binary_mask2d",
    "image_suffix",
    "open_region_reader",
    "probe_image2d",
    "read_image2d",
    "read_mask2d",
    "to_grey",
    "write_label_tiff",
    "write_mask_png",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")


def to_grey(image: np.ndarray | torch.Tensor, name: str = "image") -> np.ndarray:
    """A 2D float32 array; channel-last RGB(A) becomes luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B).

    Raises:
        Propagate2DError: when the array is not a 2D image (optionally with 1-4 trailing channels).
    """
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)  # torch without importing it
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float64)
        array = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    elif array.ndim == 3 and array.shape[-1] == 2:  # grey + alpha
        array = array[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise Propagate2DError(f"{name}: expected a 2D image (optionally RGB), got shape {tuple(array.shape)}.")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise Propagate2DError(f"{name}: the image contains NaN or infinite intensities.")
    return array


def binary_mask2d(mask: np.ndarray | torch.Tensor, name: str = "mask") -> np.ndarray:
    """A 2D boolean mask: nonzero marks the object (channel-last masks: nonzero in any channel).

    Raises:
        Propagate2DError: when the array is not a 2D mask (optionally with 1-4 trailing channels).
    """
    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        array = (array != 0).any(axis=-1)
    if array.ndim != 2:
        raise Propagate2DError(f"{name}: expected a 2D mask, got shape {tuple(array.shape)}.")
    return array != 0


def image_suffix(path: str | os.PathLike) -> str | None:
    """The supported image suffix of ``path`` (lower case, ``.nii.gz`` whole), or ``None``."""
    name = Path(path).name.lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _reason(error: Exception) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _read_raw(path: Path) -> np.ndarray:
    """The pixel array, channels last."""
    suffix = image_suffix(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file.")
    if suffix is None:
        raise ImageReadError(f"{path}: unsupported image type (use {', '.join(IMAGE_SUFFIXES)}).")
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                array = page.asarray()
                if page.planarconfig == 2 and page.samplesperpixel > 1 and array.ndim == 3:
                    array = np.moveaxis(array, 0, -1)
        elif suffix in (".nii", ".nii.gz"):
            array = np.asanyarray(nib.load(str(path)).dataobj)
            while array.ndim > 2 and array.shape[-1] == 1:
                array = array[..., 0]
        else:
            with Image.open(path) as image:
                if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGB")
                array = np.asarray(image)
    except Exception as error:  # the readers raise many types; the user needs the file and reason on one line
        raise ImageReadError(f"{path}: cannot read the image ({_reason(error)}).") from error
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] > 4):
        raise ImageReadError(f"{path}: expected a 2D image (optionally RGB), got shape {tuple(array.shape)}.")
    return array


def read_image2d(path: str | os.PathLike) -> np.ndarray:
    """A 2D image as float32 grey values (RGB converted to luminance).

    NIfTI arrays keep their stored index order (first axis = rows of the output masks).

    Raises:
        ImageReadError: missing, unreadable or not 2D (message names the file, one line).
    """
    path = Path(path)
    array = _read_raw(path)
    try:
        return to_grey(array, str(path))
    except ValueError as error:
        raise ImageReadError(str(error)) from error


def read_mask2d(path: str | os.PathLike) -> np.ndarray:
    """A binary 2D mask: nonzero (any channel) is the object; JPEG masks are thresholded at half their maximum."""
    path = Path(path)
    array = _read_raw(path)
    if array.ndim == 3:
        array = array.max(axis=-1)
    if image_suffix(path) in (".jpg", ".jpeg"):  # lossy: ringing leaves small nonzero values in the background
        return array > 0.5 * float(array.max(initial=0))
    return array != 0


def probe_image2d(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the file header only (no pixel decoding), to reject bad files early."""
    path = Path(path)
    suffix = image_suffix(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file.")
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                shape = (page.imagelength, page.imagewidth)
        elif suffix in (".nii", ".nii.gz"):
            dims = [d for d in nib.load(str(path)).shape if d != 1] or [1, 1]
            if len(dims) != 2:
                raise ValueError(f"not a 2D image (shape {nib.load(str(path)).shape})")
            shape = (dims[0], dims[1])
        elif suffix is not None:
            with Image.open(path) as image:
                image.verify()
                shape = (image.height, image.width)
        else:
            raise ValueError(f"unsupported image type (use {', '.join(IMAGE_SUFFIXES)})")
    except Exception as error:
        raise ImageReadError(f"{path}: cannot read the image ({_reason(error)}).") from error
    return int(shape[0]), int(shape[1])


def write_mask_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a boolean mask as an 8-bit PNG (0 / 255), atomically."""
    image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    return write_atomic(path, lambda temporary: image.save(temporary, format="PNG"))


class ArrayRegionReader:
    """Regions of an in-memory (or memory-mapped) 2D / channel-last RGB array, as float32 grey values."""

    def __init__(self, array: np.ndarray) -> None:
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
            raise ImageReadError(f"expected a 2D image (optionally RGB), got shape {tuple(array.shape)}.")
        self.array = array
        self.shape = (int(array.shape[0]), int(array.shape[1]))

    def _block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.asarray(self.array[r0:r1, c0:c1])

    def read(self, top: int, left: int, height: int, width: int, fill: float = 0.0) -> np.ndarray:
        """The ``height x width`` region at ``(top, left)``; pixels outside the image get ``fill``."""
        out = np.full((height, width), fill, dtype=np.float32)
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + height, self.shape[0]), min(left + width, self.shape[1])
        if r1 > r0 and c1 > c0:
            out[r0 - top : r1 - top, c0 - left : c1 - left] = to_grey(self._block(r0, r1, c0, c1))
        return out

    def close(self) -> None:
        pass


class TiffRegionReader(ArrayRegionReader):
    """Lazy regions of the first page of a TIFF: memory-mapped when uncompressed, else decoded per segment.

    Args:
        path: the TIFF file.
        cache_segments: decoded tiles / strips kept (least recently used dropped).

    Attributes:
        segments_decoded: segments decoded so far (for checks that the image is not read whole).
    """

    def __init__(self, path: str | os.PathLike, cache_segments: int = 256) -> None:
        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
            page = self._tif.pages.first
        except Exception as error:
            raise ImageReadError(f"{self.path}: cannot read the image ({_reason(error)}).") from error
        self._page = page
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.samples = int(page.samplesperpixel)
        self.segments_decoded = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(8, cache_segments)
        if page.imagedepth > 1 or (self.samples > 4):
            self.close()
            raise ImageReadError(f"{self.path}: expected a 2D image (optionally RGB), got a volume or >4 samples.")
        self.array = None
        if page.is_memmappable and not (page.planarconfig == 2 and self.samples > 1):
            self.array = tifffile.memmap(self.path, page=0, mode="r")
        if page.is_tiled:
            self._seg_h, self._seg_w = int(page.tilelength), int(page.tilewidth)
        else:
            self._seg_h, self._seg_w = min(int(page.rowsperstrip), self.shape[0]), self.shape[1]
        self._rows = math.ceil(self.shape[0] / self._seg_h)
        self._cols = math.ceil(self.shape[1] / self._seg_w)

    def _segment(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        page, fh = self._page, self._tif.filehandle
        data = None
        if page.databytecounts[index] > 0:
            fh.seek(page.dataoffsets[index])
            data = fh.read(page.databytecounts[index])
        try:
            segment, _, shape = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as error:
            raise ImageReadError(f"{self.path}: cannot decode segment {index} ({_reason(error)}).") from error
        segment = np.zeros(shape, page.dtype) if segment is None else segment
        segment = np.asarray(segment).reshape(segment.shape[-3:])  # (length, width, contiguous samples)
        self.segments_decoded += 1
        self._cache[index] = segment
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return segment

    def _block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        if self.array is not None:
            return np.asarray(self.array[r0:r1, c0:c1])
        separate = self._page.planarconfig == 2 and self.samples > 1
        planes = self.samples if separate else 1
        out = np.zeros((r1 - r0, c1 - c0, self.samples), dtype=self._page.dtype)
        per_plane = self._rows * self._cols
        for sr in range(r0 // self._seg_h, (r1 - 1) // self._seg_h + 1):
            for sc in range(c0 // self._seg_w, (c1 - 1) // self._seg_w + 1):
                y0, x0 = sr * self._seg_h, sc * self._seg_w
                ya, yb = max(r0, y0), min(r1, y0 + self._seg_h)
                xa, xb = max(c0, x0), min(c1, x0 + self._seg_w)
                for plane in range(planes):
                    segment = self._segment(plane * per_plane + sr * self._cols + sc)
                    piece = segment[ya - y0 : yb - y0, xa - x0 : xb - x0]
                    target = slice(plane, plane + 1) if separate else slice(None)
                    out[ya - r0 : yb - r0, xa - c0 : xb - c0, target] = piece
        return out

    def close(self) -> None:
        self._cache.clear()
        self.array = None
        self._tif.close()


def open_region_reader(image: str | os.PathLike | np.ndarray) -> ArrayRegionReader:
    """A region reader: lazy for TIFF paths, whole-image for other files and arrays."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageReadError(f"{path}: no such file.")
        if image_suffix(path) in TIFF_SUFFIXES:
            return TiffRegionReader(path)
        return ArrayRegionReader(read_image2d(path))
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    return ArrayRegionReader(array)


def write_label_tiff(
    path: str | os.PathLike,
    shape: tuple[int, int],
    dtype: np.dtype | type,
    read_rows: Callable[[int, int], np.ndarray],
    tile: int = 256,
) -> Path:
    """Write a ``shape`` label image to a tiled, zlib-compressed BigTIFF, one row of tiles in memory at a time.

    Args:
        path: destination (written atomically).
        shape: ``(height, width)``.
        dtype: pixel type.
        read_rows: ``read_rows(r0, r1)`` returns rows ``[r0, r1)`` (full width) of the label image.
        tile: tile side (multiple of 16).
    """
    height, width = shape

    def tiles() -> Iterator[np.ndarray]:
        for r0 in range(0, height, tile):
            rows = np.asarray(read_rows(r0, min(r0 + tile, height)), dtype=dtype)
            band = np.zeros((tile, math.ceil(width / tile) * tile), dtype=dtype)
            band[: rows.shape[0], :width] = rows
            for c0 in range(0, width, tile):
                yield band[:, c0 : c0 + tile]

    def write(temporary: Path) -> None:
        with tifffile.TiffWriter(temporary, bigtiff=True) as tif:
            tif.write(tiles(), shape=(height, width), dtype=dtype, tile=(tile, tile), compression="zlib")

    return write_atomic(path, write)
