"""Square region-of-interest crop around a guiding mask, resize to the network size, and exact paste-back."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = ["RoIWindow", "SquareRoICrop", "SquareRoICropd", "crop_resize", "paste_back", "square_roi"]


@dataclass(frozen=True)
class RoIWindow:
    """A square window ``[top, top + size) x [left, left + size)`` in slice coordinates; may overhang the slice."""

    top: int
    left: int
    size: int

    def clipped(self, height: int, width: int) -> tuple[slice, slice, slice, slice]:
        """``(rows, cols)`` of the slice inside the window and ``(rows, cols)`` of the window they fill."""
        r0, c0 = max(self.top, 0), max(self.left, 0)
        r1, c1 = min(self.top + self.size, height), min(self.left + self.size, width)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"RoI window {self} lies outside the {height}x{width} slice.")
        return (
            slice(r0, r1),
            slice(c0, c1),
            slice(r0 - self.top, r1 - self.top),
            slice(c0 - self.left, c1 - self.left),
        )


def mask_bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """Inclusive ``(r0, c0, r1, c1)`` of the nonzero pixels of a 2D mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("cannot place a region of interest around an empty mask.")
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def square_roi(mask: torch.Tensor, scale: float = 1.5, min_size: int = 16) -> RoIWindow:
    """The square window centred on the mask's bounding box, ``max(int(scale * longest side), min_size)`` wide.

    Args:
        mask: ``(H, W)`` guiding mask.
        scale: side of the square relative to the bounding box's longer side (inference 1.5; training U(1, 2)).
        min_size: smallest side in pixels.
    """
    r0, c0, r1, c1 = mask_bounding_box(mask)
    size = max(int(scale * max(r1 - r0 + 1, c1 - c0 + 1)), min_size)
    # Centre of the bounding box keeps every object pixel inside the square, unlike the pixel mean.
    top = (r0 + r1 + 1 - size) // 2
    left = (c0 + c1 + 1 - size) // 2
    return RoIWindow(top, left, size)


def crop_resize(
    slices: torch.Tensor, window: RoIWindow, out_size: int, pad_value: float = 0.0, mode: str = "bilinear"
) -> torch.Tensor:
    """Cut ``window`` out of every slice (padding outside the slice) and resize to ``out_size``.

    Args:
        slices: ``(N, H, W)``.
        window: the square window.
        out_size: side of the output.
        pad_value: value of the pixels of the window that lie outside the slice.
        mode: ``"bilinear"`` for images, ``"nearest-exact"`` for masks (aligned with the bilinear pixel grid).

    Returns:
        ``(N, out_size, out_size)`` float tensor.
    """
    n, height, width = slices.shape
    rows, cols, win_rows, win_cols = window.clipped(height, width)
    crop = torch.full((n, window.size, window.size), pad_value, dtype=torch.float32, device=slices.device)
    crop[:, win_rows, win_cols] = slices[:, rows, cols].float()
    if window.size == out_size:
        return crop
    align = {"align_corners": False, "antialias": window.size > out_size} if mode == "bilinear" else {}
    return F.interpolate(crop[:, None], size=(out_size, out_size), mode=mode, **align)[:, 0]


def paste_back(prediction: torch.Tensor, window: RoIWindow, height: int, width: int) -> torch.Tensor:
    """Resize predictions back to the window and place them in full slices (zero outside the window).

    Args:
        prediction: ``(N, S, S)`` per-pixel values (e.g. foreground probabilities).
        window: the window the inputs were cut from.
        height: slice height.
        width: slice width.

    Returns:
        ``(N, height, width)`` float tensor.
    """
    rows, cols, win_rows, win_cols = window.clipped(height, width)
    if prediction.shape[-1] != window.size:
        prediction = F.interpolate(
            prediction[:, None].float(), size=(window.size, window.size), mode="bilinear", align_corners=False
        )[:, 0]
    out = torch.zeros((prediction.shape[0], height, width), dtype=torch.float32, device=prediction.device)
    out[:, rows, cols] = prediction[:, win_rows, win_cols]
    return out


class SquareRoICrop(Transform):
    """Crop a square RoI around a 2D mask from a stack of slices and resize it to the network size.

    Args:
        out_size: side of the network input.
        scale: RoI side relative to the mask's bounding box.
        min_size: smallest RoI side.

    ``__call__(img, mask)`` with ``img`` ``(N, H, W)`` and ``mask`` ``(H, W)`` returns ``(N, out_size, out_size)``.
    """

    backend = [torch.Tensor]

    def __init__(self, out_size: int = 224, scale: float = 1.5, min_size: int = 16) -> None:
        self.out_size, self.scale, self.min_size = out_size, scale, min_size

    def __call__(self, img: torch.Tensor, mask: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        window = square_roi(torch.as_tensor(mask), self.scale, self.min_size)
        return crop_resize(torch.as_tensor(img), window, self.out_size, mode=mode)


class SquareRoICropd(MapTransform):
    """Dictionary wrapper of :class:`SquareRoICrop`; the window comes from ``mask_key`` (a ``(H, W)`` mask).

    Keys listed in ``nearest_keys`` (label stacks) are resized with nearest neighbour, the rest bilinearly; the
    window is stored under ``"roi_window"`` for paste-back.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str,
        out_size: int = 224,
        scale: float = 1.5,
        min_size: int = 16,
        nearest_keys: KeysCollection = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.out_size, self.scale, self.min_size = out_size, scale, min_size
        self.nearest_keys = {nearest_keys} if isinstance(nearest_keys, str) else set(nearest_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        window = square_roi(torch.as_tensor(d[self.mask_key]), self.scale, self.min_size)
        for key in self.key_iterator(d):
            mode = "nearest-exact" if key in self.nearest_keys else "bilinear"
            d[key] = crop_resize(torch.as_tensor(d[key]), window, self.out_size, mode=mode)
        d["roi_window"] = window
        return d
