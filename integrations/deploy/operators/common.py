"""What the PAM deploy operators share: the run state, input errors, DICOM geometry and the staging of outputs."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pam_monai.errors import InputError, NoObjectError

__all__ = [
    "LPS_FROM_RAS",
    "NoObjectError",
    "PAMInputError",
    "RunState",
    "SeriesGeometry",
    "Stopwatch",
    "guarded",
    "one_line",
    "series_geometry",
]

#: diag(-1, -1, 1, 1): DICOM patient coordinates (LPS) <-> NIfTI / MONAI world coordinates (RAS); its own inverse.
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_LOG = logging.getLogger("pam.deploy")


#: Input the application cannot use (series geometry, input folder, prompt file): exit code 2, no outputs. It is
#: pam_monai's own base class of bad-input errors, so the app handles its errors and pam_monai's alike.
PAMInputError = InputError


def one_line(error: BaseException | str, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, BaseException) and not text:
        text = type(error).__name__
    return text[:limit]


@dataclass
class RunState:
    """Shared by the operators of one run: where outputs are staged, the first error, timings and facts."""

    staging: Path
    graph_started: float = field(default_factory=time.perf_counter)  # reset by main() right before app.run()
    error: str | None = None
    exit_code: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)

    def fail(self, message: str, exit_code: int = 2) -> None:
        if self.error is None:  # the first error is the cause; later ones follow from it
            self.error, self.exit_code = message, exit_code
            _LOG.debug("run stopped: %s", message)  # main() prints it once, as the last line

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def in_folder(cls, output: Path) -> RunState:
        """A hidden staging folder inside ``output`` (same file system, so publishing is a rename)."""
        output.mkdir(parents=True, exist_ok=True)
        return cls(staging=Path(tempfile.mkdtemp(prefix=".pam-staging-", dir=output)))

    def mark_read(self) -> None:
        """``seconds["read"]``: from the start of the graph (the SDK's loader reads the files) to the volume."""
        self.seconds["read"] = round(time.perf_counter() - self.graph_started, 4)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def guarded(state: RunState, what: str, function, *args, **kwargs):  # noqa: ANN001, ANN201
    """Run ``function``; an input error is recorded in ``state`` (and ``None`` returned) instead of raised.

    Input errors end the run cleanly: the operator emits nothing, so nothing downstream runs and no output is
    published. Anything else (a bug) propagates through Holoscan as usual.
    """
    if state.failed:
        return None
    try:
        return function(*args, **kwargs)
    except InputError as error:
        state.fail(one_line(error), 2)
    except NoObjectError as error:
        state.fail(one_line(error), 1)
    except MemoryError:
        state.fail(f"{what}: out of memory.", 1)
    return None


class Stopwatch:
    """``with Stopwatch(state, "read"):`` adds the block's wall time to ``state.seconds["read"]``."""

    def __init__(self, state: RunState, key: str) -> None:
        self.state, self.key = state, key

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.state.seconds[self.key] = round(self.state.seconds.get(self.key, 0.0) + elapsed, 4)


@dataclass(frozen=True)
class SeriesGeometry:
    """The grid of a DICOM series, slices sorted along the slice normal (the SDK's order).

    Array index ``(i, j, k)`` = (column, row, slice): ``affine_lps`` maps it to patient coordinates (mm, LPS),
    ``affine_ras`` to NIfTI / MONAI world coordinates. ``sop_instance_uids[k]`` is the instance of slice ``k``.
    """

    affine_lps: np.ndarray
    rows: int
    columns: int
    slices: int
    pixel_spacing: tuple[float, float]  # (between rows, between columns), as DICOM PixelSpacing
    slice_spacing: float
    sop_instance_uids: tuple[str, ...]
    frame_of_reference_uid: str | None

    @property
    def affine_ras(self) -> np.ndarray:
        return LPS_FROM_RAS @ self.affine_lps

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (self.pixel_spacing[1], self.pixel_spacing[0], self.slice_spacing)


def _floats(dataset: Any, keyword: str, count: int, uid: str) -> np.ndarray:
    value = getattr(dataset, keyword, None)
    if value is None:
        raise PAMInputError(f"DICOM instance {uid} has no {keyword}: cannot place it in 3D.")
    array = np.asarray([float(v) for v in value], dtype=np.float64)
    if array.shape != (count,):
        raise PAMInputError(f"DICOM instance {uid}: {keyword} has {array.size} values, expected {count}.")
    return array


def series_geometry(datasets: Sequence[Any], series_uid: str = "", tolerance_mm: float = 0.01) -> SeriesGeometry:
    """Check that sorted instances form one regular 3D grid and return it.

    Checks: at least two slices, one orientation, one pixel spacing and matrix size, distinct slice positions on a
    straight line at equal steps (a missing or duplicated slice breaks this), so that slice ``k`` of the volume is
    instance ``k`` and one affine describes every voxel.

    Raises:
        PAMInputError: one line naming the series and what is wrong.
    """
    name = f"DICOM series {series_uid}" if series_uid else "the DICOM series"
    n = len(datasets)
    if n < 2:
        raise PAMInputError(f"{name} has {n} image(s); PAM needs a 3D series of at least 2 slices.")
    uids = [str(getattr(d, "SOPInstanceUID", "?")) for d in datasets]
    orientation = _floats(datasets[0], "ImageOrientationPatient", 6, uids[0])
    spacing = _floats(datasets[0], "PixelSpacing", 2, uids[0])
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    positions = np.stack([_floats(d, "ImagePositionPatient", 3, u) for d, u in zip(datasets, uids)])
    for d, uid in zip(datasets[1:], uids[1:]):
        if not np.allclose(_floats(d, "ImageOrientationPatient", 6, uid), orientation, atol=1e-4):
            raise PAMInputError(f"{name} mixes image orientations (instance {uid}); PAM needs one 3D grid.")
        if not np.allclose(_floats(d, "PixelSpacing", 2, uid), spacing, atol=1e-4):
            raise PAMInputError(f"{name} mixes pixel spacings (instance {uid}); PAM needs one 3D grid.")
        if (int(d.Rows), int(d.Columns)) != (rows, columns):
            raise PAMInputError(f"{name} mixes image sizes (instance {uid}); PAM needs one 3D grid.")
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    normal = np.cross(row_cosine, column_cosine)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise PAMInputError(f"{name}: ImageOrientationPatient {orientation.tolist()} is not two orthonormal vectors.")
    distances = positions @ normal
    steps = np.diff(distances)
    if np.any(steps <= tolerance_mm):
        k = int(np.argmin(steps))
        raise PAMInputError(
            f"{name}: instances {uids[k]} and {uids[k + 1]} lie at the same slice position; "
            "remove the duplicate (or the other series mixed into this folder)."
        )
    step = float(np.median(steps))
    off = np.abs(steps - step) > max(tolerance_mm, 0.01 * step)
    if off.any():
        k = int(np.argmax(off))
        raise PAMInputError(
            f"{name}: slice spacing is not uniform ({steps[k]:.3f} mm between slices {k} and {k + 1}, "
            f"{step:.3f} mm elsewhere); is a slice missing? PAM needs an evenly spaced series."
        )
    slice_vector = (positions[-1] - positions[0]) / (n - 1)
    expected = positions[0] + np.arange(n)[:, None] * slice_vector
    if np.abs(positions - expected).max() > max(tolerance_mm, 0.01 * step):
        raise PAMInputError(f"{name}: the slice positions do not lie on a straight line; PAM needs one 3D grid.")
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * spacing[1]  # i: along a row = to the next column
    affine[:3, 1] = column_cosine * spacing[0]  # j: down a column = to the next row
    affine[:3, 2] = slice_vector
    affine[:3, 3] = positions[0]
    frame = getattr(datasets[0], "FrameOfReferenceUID", None)
    return SeriesGeometry(
        affine_lps=affine,
        rows=rows,
        columns=columns,
        slices=n,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        slice_spacing=float(np.linalg.norm(slice_vector)),
        sop_instance_uids=tuple(uids),
        frame_of_reference_uid=str(frame) if frame else None,
    )
