"""Dynamic intensity normalisation: windows taken from the prompt's foreground rather than from fixed presets.

PropMask windows every slice with the 0.5/99.5 percentiles of the guiding slice inside the guiding mask
 (PAM paper). Box2Mask does not know the foreground yet, so it tries many candidate windows over the box
and pools the pixels its candidates call foreground (PAM paper).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = [
    "GuidedIntensityWindow",
    "GuidedIntensityWindowd",
    "apply_window",
    "candidate_windows",
    "guided_window",
    "pooled_foreground_window",
]

DEFAULT_LOW_CANDIDATES = tuple(range(5, 21))
DEFAULT_HIGH_CANDIDATES = tuple(range(90, 96))


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
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
    image, mask = _as_tensor(image), _as_tensor(mask)
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


class GuidedIntensityWindow(Transform):
    """Normalise an image with the window of a guiding foreground (PAM paper).

    Args:
        lower_percentile: percentile giving the window's low end.
        upper_percentile: percentile giving the window's high end.

    ``__call__(img, guide_mask, guide_image=None)``: the window comes from the pixels of ``guide_image``
    (default: ``img``) under ``guide_mask``; returns ``img`` clipped and scaled to ``[-1, 1]`` as float32.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, lower_percentile: float = 0.5, upper_percentile: float = 99.5) -> None:
        self.lower_percentile = lower_percentile
        self.upper_percentile = upper_percentile

    def window(self, image: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> tuple[float, float]:
        return guided_window(image, mask, self.lower_percentile, self.upper_percentile)

    def __call__(
        self,
        img: torch.Tensor | np.ndarray,
        guide_mask: torch.Tensor | np.ndarray,
        guide_image: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        img = _as_tensor(img)
        lo, hi = self.window(img if guide_image is None else guide_image, guide_mask)
        return apply_window(img, lo, hi)


class GuidedIntensityWindowd(MapTransform):
    """Dictionary wrapper of :class:`GuidedIntensityWindow`.

    Args:
        keys: images to normalise.
        mask_key: the guiding mask.
        guide_image_key: the image the window is taken from (default: each key itself).
        lower_percentile: see :class:`GuidedIntensityWindow`.
        upper_percentile: see :class:`GuidedIntensityWindow`.
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str,
        guide_image_key: str | None = None,
        lower_percentile: float = 0.5,
        upper_percentile: float = 99.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.guide_image_key = guide_image_key
        self.normalise = GuidedIntensityWindow(lower_percentile, upper_percentile)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        guide = None if self.guide_image_key is None else d[self.guide_image_key]
        for key in self.key_iterator(d):
            d[key] = self.normalise(d[key], d[self.mask_key], guide)
        return d


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
