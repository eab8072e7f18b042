"""Writing prompted propagation results from MONAI engines (the bundle's inference section, MONAI Label)."""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from pam_monai.data.io import save_label_image, voxel_volume_ml, write_atomic
from pam_monai.visualize.preview import save_preview

__all__ = ["SavePropagationResultsd"]


class SavePropagationResultsd(MapTransform):
    """Write the label image, a JSON report and a PNG preview for each item (atomically).

    Args:
        keys: the prediction key (``(1, X, Y, Z)`` label image).
        output_dir: where to write ``<name>_seg.nii.gz``, ``<name>_report.json`` and ``<name>_preview.png``.
        image_key: the input image, whose affine and file name are used.
        preview: also write the PNG preview.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_dir: str | os.PathLike = "eval",
        image_key: str = "image",
        preview: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.preview = preview

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        affine = np.asarray(image.affine if isinstance(image, MetaTensor) else np.eye(4))
        source = str(image.meta.get("filename_or_obj", "image")) if isinstance(image, MetaTensor) else "image"
        name = Path(source).name.split(".")[0] or "image"
        for key in self.key_iterator(d):
            labels = torch.as_tensor(d[key])[0].cpu().numpy()
            seg_path = save_label_image(labels, affine, self.output_dir / f"{name}_seg.nii.gz")
            voxel_ml = voxel_volume_ml(affine)
            objects = [
                {
                    "label": int(v),
                    "voxels": int((labels == v).sum()),
                    "volume_ml": round(float((labels == v).sum()) * voxel_ml, 4),
                }
                for v in np.unique(labels)
                if v > 0
            ]
            report = {"image": source, "output": str(seg_path), "objects": objects}
            write_atomic(
                self.output_dir / f"{name}_report.json",
                lambda temporary, r=report: temporary.write_text(json.dumps(r, indent=2)),
            )
            if self.preview and objects:
                axis = int(d.get("prompt_args", {}).get("axis", 2))
                volume = torch.as_tensor(image)[0].cpu().numpy()
                covered = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
                save_preview(
                    volume, labels, axis, [int(covered[len(covered) // 2])], self.output_dir / f"{name}_preview.png"
                )
            d[f"{key}_path"] = str(seg_path)
        return d
