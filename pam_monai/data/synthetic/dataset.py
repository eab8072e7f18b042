"""Synthetic volumes as a MONAI dataset, and written as NIfTI files with an MSD-style ``dataset.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import Dataset

from pam_monai.data.io import write_atomic
from pam_monai.data.synthetic.volume import generate_volume

__all__ = ["SyntheticVolumeDataset", "write_synthetic_datalist"]


class SyntheticVolumeDataset(Dataset):
    """MONAI dataset of synthetic volumes generated on the fly (item ``i`` from seed ``seed + i``).

    Each item is a dict::

        {"image": float32 (1, X, Y, Z), "label": uint8 (1, X, Y, Z), "spacing": float64 (3,),
         "seed": int, "modality": "CT" | "MR"}

    run through ``transform`` (a MONAI dictionary transform chain, without ``LoadImaged``). With
    ``as_meta_tensor=True`` the image and label are :class:`monai.data.MetaTensor` carrying the affine
    ``diag(spacing)``, so spatial transforms such as ``Spacingd`` work as on loaded NIfTI files. Mix with real data
    via ``torch.utils.data.ConcatDataset``.

    Args:
        num_volumes: dataset length.
        shape: ``(X, Y, Z)`` of every volume.
        seed: seed of item 0.
        transform: callable(s) applied to each item dict.
        cache: keep generated (untransformed) items in memory; later accesses return copies.
        as_meta_tensor: return image/label as ``MetaTensor`` with affine instead of numpy arrays.
        **generate_kwargs: passed to :func:`generate_volume` (``modality``, ``num_objects``, ``spacing``, ...).
    """

    def __init__(
        self,
        num_volumes: int,
        shape: Sequence[int] = (96, 96, 64),
        seed: int = 0,
        transform: Sequence[Callable] | Callable | None = None,
        *,
        cache: bool = False,
        as_meta_tensor: bool = False,
        **generate_kwargs: Any,
    ) -> None:
        if num_volumes < 0:
            raise ValueError(f"num_volumes must be >= 0, got {num_volumes}")
        super().__init__(data=[{"seed": int(seed) + i} for i in range(int(num_volumes))], transform=transform)
        self.shape = tuple(int(s) for s in shape)
        self.seed = int(seed)
        self.cache = cache
        self.as_meta_tensor = as_meta_tensor
        self.generate_kwargs = generate_kwargs
        self._cache: dict[int, dict[str, Any]] = {}

    def generate(self, index: int) -> dict[str, Any]:
        """The untransformed item ``index`` (see class docstring for the layout)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} volumes")
        index %= n
        if self.cache and index in self._cache:
            item = self._cache[index]
        else:
            vol = generate_volume(self.seed + index, self.shape, **self.generate_kwargs)
            item = {
                "image": vol.image[None],
                "label": vol.label[None],
                "spacing": np.asarray(vol.spacing, dtype=np.float64),
                "seed": self.seed + index,
                "modality": vol.modality,
            }
            if self.cache:
                self._cache[index] = item
        item = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in item.items()}
        if self.as_meta_tensor:
            from monai.data import MetaTensor

            affine = np.diag([*item["spacing"], 1.0])
            for key in ("image", "label"):
                item[key] = MetaTensor(item[key], affine=affine)
        return item

    def _transform(self, index: int) -> Any:
        return self.transform(self.generate(index))


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    write_atomic(path, lambda p: nib.save(img, str(p)))


def write_synthetic_datalist(
    out_dir: str | os.PathLike,
    num_volumes: int,
    shape: Sequence[int] = (96, 96, 64),
    seed: int = 0,
    num_validation: int | None = None,
    *,
    progress: bool = False,
    **generate_kwargs: Any,
) -> Path:
    """Write synthetic volumes as NIfTI plus a Medical Segmentation Decathlon style ``dataset.json``.

    Layout: ``out_dir/imagesTr/synth_XXXX.nii.gz`` (float32) and ``out_dir/labelsTr/synth_XXXX.nii.gz`` (uint8),
    ``XXXX`` = volume index ``i`` (seed ``seed + i``), affine ``diag(sx, sy, sz, 1)``. The last ``num_validation``
    volumes form the ``validation`` list, the others ``training``; entries are ``{"image": relpath, "label":
    relpath}`` relative to ``out_dir``. Every file is written to a temporary name and renamed into place.

    Args:
        out_dir: output directory (created).
        num_volumes: number of volumes.
        shape: ``(X, Y, Z)``.
        seed: seed of volume 0.
        num_validation: validation volumes; default ``round(0.1 * num_volumes)`` (at least 1 if ``num_volumes >=
            2``).
        progress: show a tqdm progress bar.
        **generate_kwargs: passed to :func:`generate_volume`.

    Returns:
        Path of the written ``dataset.json``.
    """
    if num_volumes < 1:
        raise ValueError(f"num_volumes must be >= 1, got {num_volumes}")
    if num_validation is None:
        num_validation = max(round(0.1 * num_volumes), 1) if num_volumes >= 2 else 0
    if not 0 <= num_validation <= num_volumes:
        raise ValueError(f"num_validation must be in [0, {num_volumes}], got {num_validation}")
    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(num_volumes - 1)))
    entries: list[dict[str, str]] = []
    max_label = 0
    modalities: set[str] = set()
    indices: Any = range(num_volumes)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synthetic volumes", unit="vol")
    for i in indices:
        vol = generate_volume(seed + i, shape, **generate_kwargs)
        name = f"synth_{i:0{width}d}.nii.gz"
        _save_nifti(vol.image, vol.affine, out / "imagesTr" / name)
        _save_nifti(vol.label, vol.affine, out / "labelsTr" / name)
        entries.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
        max_label = max(max_label, vol.num_objects)
        modalities.add(vol.modality)
    n_train = num_volumes - num_validation
    labels = {"0": "background", **{str(k): f"object_{k}" for k in range(1, max_label + 1)}}
    meta = {
        "name": "PAMSynthetic",
        "description": "Procedural labelled volumes for object-agnostic mask propagation (pam_monai.data.synthetic)",
        "tensorImageSize": "3D",
        "modality": {"0": "/".join(sorted(modalities))},
        "labels": labels,
        "numTraining": n_train,
        "numValidation": num_validation,
        "seed": seed,
        "shape": list(map(int, shape)),
        "training": entries[:n_train],
        "validation": entries[n_train:],
    }
    path = out / "dataset.json"
    write_atomic(path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return path
