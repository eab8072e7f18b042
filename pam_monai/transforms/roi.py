"""Square region-of-interest crop around a guiding mask, resized to the network size, as MONAI transforms.

The window, crop and exact paste-back functions live in :mod:`pam_monai.transforms.functional` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from pam_monai.transforms.functional import RoIWindow, crop_resize, mask_bounding_box, paste_back, square_roi

__all__ = [
    "RoIWindow",
    "SquareRoICrop",
    "SquareRoICropd",
    "crop_resize",
    "mask_bounding_box",
    "paste_back",
    "square_roi",
]


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
