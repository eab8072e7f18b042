"""The array functions behind the intensity and region-of-interest transforms, on plain tensors (MONAI keeps the
functional forms of its transforms in ``functional`` modules likewise).

The inferers call these directly; :mod:`pam_monai.transforms.intensity` and :mod:`pam_monai.transforms.roi` wrap
them as MONAI ``Transform`` / ``MapTransform`` classes. This module imports no MONAI, so the command line's path from
an image to its labels does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_HIGH_CANDIDATES",
    "DEFAULT_LOW_CANDIDATES",
    "RoIWindow",
    "apply_window",
    "as_tensor",
    "candidate_windows",
    "crop_resize",
    "guided_window",
    "mask_bounding_box",
    "paste_back",
    "pooled_foreground_window",
    "square_roi",
]

DEFAULT_LOW_CANDIDATES = tuple(range(5, 21))
DEFAULT_HIGH_CANDIDATES = tuple(range(90, 96))


def as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``x`` as a tensor (a tensor is returned as it is, an array shares its memory where it can)."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _widen(lo: float, hi: float, reference: torch.Tensor) -> tuple[float, float]:
    """Give a (near) constant foreground a usable window: 1 % of the reference range, at least 1e-3."""
    if hi - lo >= 1e-6 * max(1.0, abs(hi), abs(lo)):
        return lo, hi
    spread = float(reference.max() - reference.min()) if reference.numel() else 0.0
    half = max(0.005 * spread, 1e-3)
    return lo - half, hi + half


def guided_window(
    image: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
) -> tuple[float, float]:
    """The intensity window ``(lo, hi)`` of the pixels of ``image`` under ``mask``.

    Args:
        image: any shape, e.g. the guiding slice ``(H, W)``.
        mask: same shape as ``image``; nonzero marks the foreground.
        lower_percentile: percentile in [0, 100] giving ``lo``.
        upper_percentile: percentile in [0, 100] giving ``hi``.

    Raises:
        ValueError: if the mask is empty or the shapes differ.
    """
    image, mask = as_tensor(image), as_tensor(mask)
    if image.shape != mask.shape:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} must have the same shape.")
    values = image[mask.bool()].float()
    if values.numel() == 0:
        raise ValueError("the guiding mask is empty: no foreground to take the intensity window from.")
    q = torch.tensor([lower_percentile / 100.0, upper_percentile / 100.0], device=values.device)
    lo, hi = torch.quantile(values, q).tolist()
    return _widen(lo, hi, image.float())


def apply_window(image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clip to ``[lo, hi]`` and scale linearly to ``[-1, 1]``."""
    return (image.float().clamp(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0


def candidate_windows(
    box_pixels: torch.Tensor,
    low_percentiles: Sequence[float] = DEFAULT_LOW_CANDIDATES,
    high_percentiles: Sequence[float] = DEFAULT_HIGH_CANDIDATES,
) -> torch.Tensor:
    """All ``(lo, hi)`` windows from pairs of low and high percentiles of the box pixels (PAM paper).

    Returns:
        ``(len(low) * len(high), 2)`` float tensor; windows of zero width are widened.
    """
    values = box_pixels.flatten().float()
    q = torch.tensor([*low_percentiles, *high_percentiles], device=values.device, dtype=values.dtype) / 100.0
    quantiles = torch.quantile(values, q)
    lows, highs = quantiles[: len(low_percentiles)], quantiles[len(low_percentiles) :]
    windows = torch.stack(torch.broadcast_tensors(lows[:, None], highs[None, :]), dim=-1).reshape(-1, 2)
    spread = float(values.max() - values.min())
    min_width = max(0.01 * spread, 1e-3)
    narrow = (windows[:, 1] - windows[:, 0]) < min_width
    windows[narrow, 1] = windows[narrow, 0] + min_width
    return windows


def pooled_foreground_window(
    box_pixels: torch.Tensor,
    candidate_masks: torch.Tensor,
    min_pixels: int = 10,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
) -> tuple[float, float] | None:
    """The window of the pixels that the candidate passes call foreground (PAM paper).

    Args:
        box_pixels: ``(h, w)`` box image at the candidate resolution.
        candidate_masks: ``(K, h, w)`` boolean masks, one per candidate window.
        min_pixels: candidates with fewer foreground pixels are ignored.

    Returns:
        ``(lo, hi)``, or ``None`` when no candidate found enough foreground.
    """
    keep = candidate_masks.flatten(1).sum(1) >= min_pixels
    if not bool(keep.any()):
        return None
    pooled = box_pixels.expand_as(candidate_masks)[keep][candidate_masks[keep]]
    q = torch.tensor([lower_percentile / 100.0, upper_percentile / 100.0], device=pooled.device)
    if pooled.numel() > 8_000_000:  # torch.quantile's input limit; a regular subsample keeps the percentiles
        pooled = pooled[:: pooled.numel() // 8_000_000 + 1]
    lo, hi = torch.quantile(pooled.float(), q).tolist()
    return _widen(lo, hi, box_pixels.float())


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
