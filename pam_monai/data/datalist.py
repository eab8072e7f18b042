"""Reading and checking Medical Segmentation Decathlon style datalists before training starts.

A training run should not die hours in because one label file is missing, sits on another grid than its image,
or holds no object. :func:`validate_datalist` checks every ``{"image", "label"}`` entry up front and raises
:class:`DatalistError` with a one-line message naming the offending file. NIfTI files are checked from their
headers (plus one read of the label data for the emptiness check); other formats (NRRD, MHA, DICOM folders) are
read with MONAI's ``LoadImage``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pam_monai.errors import DatalistError

__all__ = ["DatalistError", "label_names", "load_datalist", "validate_datalist"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_NIFTI_SUFFIXES)


def _grid(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """``(spatial shape, 4x4 affine)`` of an image file or DICOM folder."""
    if _is_nifti(path):
        import nibabel as nib

        image = nib.load(str(path))
        return tuple(int(s) for s in image.shape[:3]), np.asarray(image.affine, dtype=np.float64)
    from monai.transforms import LoadImage

    image = LoadImage(image_only=True, ensure_channel_first=False)(str(path))
    return tuple(int(s) for s in image.shape[:3]), np.asarray(image.affine, dtype=np.float64)


def _label_is_empty(path: Path) -> bool:
    if _is_nifti(path):
        import nibabel as nib

        data = np.asanyarray(nib.load(str(path)).dataobj)
    else:
        from monai.transforms import LoadImage

        data = np.asarray(LoadImage(image_only=True, ensure_channel_first=False)(str(path)))
    return not bool(np.any(np.rint(data) > 0)) if data.dtype.kind == "f" else not bool(np.any(data > 0))


def _path(item: Mapping[str, Any], key: str, index: int) -> Path:
    value = item.get(key)
    if value is None:
        raise DatalistError(f"datalist entry {index} has no {key!r} (entry: {_one_line(dict(item), 160)}).")
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise DatalistError(f"datalist entry {index}: expected one {key} file, got {len(value)}: {value}.")
        value = value[0]
    return Path(os.fspath(value))


def validate_datalist(
    items: Sequence[Mapping[str, Any]],
    image_key: str = "image",
    label_key: str = "label",
    check_empty: bool = True,
    atol: float = 1e-3,
) -> list[dict[str, Any]]:
    """Check that every entry's image and label exist, share one voxel grid, and that the label is not empty.

    Args:
        items: datalist entries with absolute paths (as returned by ``monai.data.load_decathlon_datalist``).
        image_key: key of the image path.
        label_key: key of the label path.
        check_empty: also read every label and reject those without any object (value > 0).
        atol: tolerance (mm) on the affine matrices.

    Returns:
        the entries, as a list of dicts.

    Raises:
        DatalistError: one line naming the file: missing file or folder, unreadable file, label grid (shape or
            affine) different from the image grid, empty label.
    """
    checked: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DatalistError(f"datalist entry {index} is a {type(item).__name__}, not a dict with image / label.")
        image_path, label_path = _path(item, image_key, index), _path(item, label_key, index)
        for path, what in ((image_path, "image"), (label_path, "label")):
            if not path.exists():
                raise DatalistError(f"{path}: {what} file not found (datalist entry {index}).")
        grids = []
        for path, what in ((image_path, "image"), (label_path, "label")):
            try:
                grids.append(_grid(path))
            except Exception as exc:  # readers raise many exception types; report the file on one line
                raise DatalistError(f"{path}: cannot read the {what} ({_one_line(exc, 200)}).") from exc
        (image_shape, image_affine), (label_shape, label_affine) = grids
        if image_shape != label_shape:
            raise DatalistError(
                f"{label_path}: label grid {label_shape} differs from image grid {image_shape} of {image_path}."
            )
        if not np.allclose(image_affine, label_affine, atol=atol, rtol=0.0):
            raise DatalistError(
                f"{label_path}: label affine differs from the affine of {image_path} "
                f"(max difference {float(np.abs(image_affine - label_affine).max()):.4g} mm)."
            )
        if check_empty:
            try:
                empty = _label_is_empty(label_path)
            except Exception as exc:  # pragma: no cover - the grid check read the same file successfully
                raise DatalistError(f"{label_path}: cannot read the label ({_one_line(exc, 200)}).") from exc
            if empty:
                raise DatalistError(f"{label_path}: the label is empty (no voxel > 0), nothing to train on.")
        checked.append(dict(item))
    return checked


def load_datalist(
    data_list_file_path: str | os.PathLike[str] | None,
    data_list_key: str = "training",
    base_dir: str | os.PathLike[str] | None = None,
    validate: bool = True,
    required: bool = True,
) -> list[dict[str, Any]]:
    """Load one list of a Decathlon-style ``dataset.json`` (paths made absolute) and validate it.

    Args:
        data_list_file_path: the JSON file; ``None`` gives an empty list.
        data_list_key: ``"training"``, ``"validation"``, ...
        base_dir: folder the relative paths refer to (default: the JSON file's folder).
        validate: run :func:`validate_datalist`.
        required: raise when the key is missing or its list is empty (otherwise return ``[]``).

    Raises:
        DatalistError: missing or unreadable JSON, missing key (when required), or a bad entry.
    """
    if data_list_file_path is None:
        return []
    from monai.data import load_decathlon_datalist

    path = Path(os.fspath(data_list_file_path))
    if not path.is_file():
        raise DatalistError(f"{path}: datalist file not found.")
    try:
        content = json.loads(path.read_text())
    except Exception as exc:  # invalid JSON or encoding
        raise DatalistError(f"{path}: cannot read the datalist ({_one_line(exc, 200)}).") from exc
    if not isinstance(content, Mapping) or not content.get(data_list_key):
        if required:
            raise DatalistError(f"{path}: the datalist has no (or an empty) {data_list_key!r} list.")
        return []
    try:
        items = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=data_list_key, base_dir=base_dir)
    except Exception as exc:
        raise DatalistError(f"{path}: cannot read the {data_list_key!r} list ({_one_line(exc, 200)}).") from exc
    return validate_datalist(items) if validate else [dict(i) for i in items]


def label_names(data_list_file_path: str | os.PathLike[str] | None) -> dict[int, str]:
    """The ``labels`` map of a Decathlon-style ``dataset.json`` (value -> name); empty when absent."""
    if data_list_file_path is None or not Path(os.fspath(data_list_file_path)).is_file():
        return {}
    try:
        labels = json.loads(Path(os.fspath(data_list_file_path)).read_text()).get("labels", {})
    except Exception as exc:
        raise DatalistError(f"{data_list_file_path}: cannot read the datalist ({_one_line(exc, 200)}).") from exc
    if isinstance(labels, Mapping):
        pairs = labels.items()
    else:
        pairs = enumerate(labels)
    out = {}
    for key, value in pairs:
        # MSD uses {"1": "liver"}; some lists use {"liver": 1}.
        if str(key).lstrip("-").isdigit():
            out[int(key)] = str(value)
        elif str(value).lstrip("-").isdigit():
            out[int(value)] = str(key)
    return out
