"""MONAI dictionary transform that resolves a bundle's prompt entry (see :mod:`pam_monai.prompts`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pam_monai.errors import PromptError
from pam_monai.prompts.parse import load_prompt_files, parse_prompt
from pam_monai.prompts.slicer_roi import read_slicer_roi, roi_prompt

__all__ = ["LoadPromptd"]


class LoadPromptd(MapTransform):
    """Resolve ``data[key]`` (a prompt path, JSON text or mapping, see :func:`parse_prompt`) into ``prompt_args``.

    A mask prompt is read with MONAI's ``LoadImage`` and checked against the grid of ``image_key``; a Slicer ROI
    becomes a box on that grid (:func:`~pam_monai.prompts.slicer_roi.roi_prompt`).
    """

    def __init__(self, keys: KeysCollection = "prompt", image_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            args = parse_prompt(d[key])
            roi_path = args.pop("roi_path", None)
            if roi_path is not None:
                image = d[self.image_key]
                if not hasattr(image, "affine"):
                    raise PromptError(f"{roi_path}: a Slicer ROI needs an image with world coordinates (an affine).")
                args = roi_prompt(read_slicer_roi(roi_path), np.asarray(image.affine), tuple(image.shape[-3:]))
            image = d[self.image_key]
            args = load_prompt_files(args, tuple(image.shape[-3:]), getattr(image, "affine", None))
            d["prompt_args"] = args
        return d
