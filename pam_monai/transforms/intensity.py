"""Dynamic intensity normalisation: windows taken from the prompt's foreground rather than from fixed presets.

PropMask windows every slice with the 0.5/99.5 percentiles of the guiding slice inside the guiding mask
 (PAM paper). Box2Mask does not know the foreground yet, so it tries many candidate windows over the box
and pools the pixels its candidates call foreground (PAM paper).

The window functions live in :mod:`pam_monai.transforms.functional` (re-exported here); this module holds the
MONAI transforms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from pam_monai.transforms.functional import (
    DEFAULT_HIGH_CANDIDATES,
    DEFAULT_LOW_CANDIDATES,
    apply_window,
    as_tensor,
    candidate_windows,
    guided_window,
    pooled_foreground_window,
)

__all__ = [
    "DEFAULT_HIGH_CANDIDATES",
    "DEFAULT_LOW_CANDIDATES",
    "GuidedIntensityWindow",
    "GuidedIntensityWindowd",
    "apply_window",
    "candidate_windows",
    "guided_window",
    "pooled_foreground_window",
]


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
        img = as_tensor(img)
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
