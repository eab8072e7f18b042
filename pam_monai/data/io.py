"""Reading images (3D NIfTI with nibabel, everything else through MONAI's LoadImage) and writing results
atomically (temporary file, then rename) with ordinary file permissions.

MONAI is imported where an image is turned into a MetaTensor or read by LoadImage, not when this module is, and
:func:`read_nifti` does not need it at all.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import torch

from pam_monai.errors import ImageError, ImageReadError

if TYPE_CHECKING:
    from monai.data import MetaTensor

__all__ = [
    "ImageError",
    "ImageReadError",
    "affine_spacing",
    "atomic_path",
    "is_meta_tensor",
    "load_image",
    "load_volume",
    "read_nifti",
    "save_label_image",
    "voxel_volume_ml",
    "write_atomic",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _one_line(path: Path, error: BaseException) -> ImageReadError:
    reason = " ".join(str(error).split())[:300] or type(error).__name__
    return ImageReadError(f"{path}: cannot read the image ({reason}).")


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """Read a 3D NIfTI file with nibabel: its ``(X, Y, Z)`` float32 intensities (scaling applied) in file index
    order and its 4x4 affine in mm, as MONAI's ``LoadImage`` gives them; ``None`` for anything else (not a NIfTI
    name, or not 3D), which :func:`load_image` leaves to ``LoadImage``.

    Raises:
        ImageReadError: when the file is missing or not a readable NIfTI.
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES) or path.is_dir():
        return None
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder.")
    try:
        image = nib.load(str(path))
        if len(image.shape) != 3:
            return None
        # C order and writable, as LoadImage gives them (nibabel keeps the file's Fortran order, maybe a memmap).
        return np.array(image.dataobj, dtype=np.float32, order="C"), np.asarray(image.affine, dtype=np.float64)
    except Exception as error:  # nibabel raises several types; the user needs the file and the reason on one line
        raise _one_line(path, error) from error


def _existing_nifti(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`read_nifti` of a path that must exist (``None``: not a 3D NIfTI)."""
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder.")
    return read_nifti(path)


def load_image(path: str | os.PathLike) -> MetaTensor:
    """Read a NIfTI, NRRD, MHA file or a DICOM series folder as a ``(X, Y, Z)`` MetaTensor in file index order.

    A 3D NIfTI is read by :func:`read_nifti` (nibabel, skipping the set-up of every MONAI reader); other files and
    DICOM folders by MONAI's ``LoadImage``.

    Raises:
        ImageReadError: with a one-line message when the path is missing or no reader can read it.
    """
    from monai.data import MetaTensor

    path = Path(path)
    nifti = _existing_nifti(path)
    if nifti is not None:
        array, affine = nifti
        meta = {"filename_or_obj": str(path), "original_affine": affine, "spatial_shape": np.asarray(array.shape)}
        return MetaTensor(torch.from_numpy(array), affine=torch.from_numpy(affine), meta=meta)
    from monai.transforms import LoadImage

    try:
        image = LoadImage(image_only=True, ensure_channel_first=False)(str(path))
    except Exception as error:  # MONAI raises many types; the user needs the file and the reason on one line
        raise _one_line(path, error) from error
    if not isinstance(image, MetaTensor):
        image = MetaTensor(torch.as_tensor(image))
    return image


def load_volume(path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray]:
    """The ``(X, Y, Z)`` intensities and the 4x4 float64 affine (mm) of an image file, as :func:`load_image` reads
    them but without a MetaTensor: a 3D NIfTI is read with nibabel alone (MONAI is not imported); other files and
    DICOM folders go through :func:`load_image`.

    Raises:
        ImageReadError: with a one-line message when the path is missing or no reader can read it.
    """
    path = Path(path)
    nifti = _existing_nifti(path)
    if nifti is not None:
        array, affine = nifti
        return torch.from_numpy(array), affine
    image = load_image(path)
    return image.as_tensor(), np.asarray(image.affine, dtype=np.float64)


def is_meta_tensor(value: Any) -> bool:
    """Whether ``value`` is a MONAI ``MetaTensor``, without importing MONAI (a caller that made one has)."""
    module = sys.modules.get("monai.data.meta_tensor")
    return module is not None and isinstance(value, module.MetaTensor)


def affine_spacing(affine: np.ndarray | torch.Tensor) -> tuple[float, float, float]:
    """Voxel spacing (mm) along the three array axes of a 4x4 affine: the norms of its first three columns, a zero
    one read as 1 (the numbers MONAI's ``affine_to_spacing(affine, r=3)`` gives for a MetaTensor's affine)."""
    matrix = torch.as_tensor(np.asarray(affine, dtype=np.float64)[:3, :3])
    spacing = torch.sqrt(torch.sum(matrix * matrix, dim=0))
    spacing[spacing == 0] = 1.0
    return tuple(float(v) for v in spacing)  # type: ignore[return-value]


def voxel_volume_ml(affine: np.ndarray | torch.Tensor) -> float:
    """Volume of one voxel in millilitres from a 4x4 affine in mm."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return abs(float(np.linalg.det(matrix))) / 1000.0


def _create_temporary(path: Path) -> str:
    """Create an empty, uniquely named file beside ``path`` with the permissions the process umask gives new files
    (``0o666 & ~umask``, e.g. 0644 under umask 022) -- not ``mkstemp``'s private 0600 -- and return its name."""
    suffix = "".join(path.suffixes) or ".tmp"
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"{path.parent}: cannot create a temporary file for {path.name}.")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes); rename it to ``path`` only if the block succeeds.

    The result gets the permissions of any newly created file (the umask's), like a plain ``open(path, "w")``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_temporary(path)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path``."""
    with atomic_path(path) as temporary:
        write(temporary)
    return Path(path)


def save_label_image(
    labels: torch.Tensor | np.ndarray, affine: np.ndarray | torch.Tensor, path: str | os.PathLike
) -> Path:
    """Write a ``(X, Y, Z)`` label image as NIfTI with ``affine`` (spacing, origin and direction kept)."""
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: the output must be a NIfTI file (.nii or .nii.gz).")
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    values = int(array.max(initial=0))
    array = array.astype(np.uint8 if values < 256 else np.int16)
    affine = np.asarray(affine, dtype=np.float64)

    def write(temporary: Path) -> None:
        image = nib.Nifti1Image(array, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, str(temporary))

    return write_atomic(path, write)
