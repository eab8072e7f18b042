"""Shared by the MONAI Label app's tests: paths, the generated studies' geometry, and requests built as 3D
Slicer's MONAI Label module builds them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "integrations" / "monailabel"
BUNDLE = ROOT / "bundle"
BUNDLE_MODEL = BUNDLE / "models" / "model.pt"
_SPEC = importlib.util.find_spec("monailabel")
# tests/ is on sys.path under pytest, so this very folder is a namespace package "monailabel": require the real one.
HAS_MONAILABEL = _SPEC is not None and _SPEC.origin is not None
requires_monailabel = pytest.mark.skipif(
    not HAS_MONAILABEL,
    reason="MONAI Label is not installed here; it has its own environment: run bash scripts/test_monailabel.sh",
)

# A sheared affine (as a tilted gantry gives): the result must keep it exactly.
AFFINE0 = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])
AFFINE1 = np.diag([1.0, 1.2, 2.0, 1.0])
# i flipped: 3D Slicer's roi pair comes out reversed along it.
AFFINE2 = np.array([[-1.0, 0, 0, 20.0], [0, 1.1, 0, 15.0], [0, 0, 1.5, -8.0], [0, 0, 0, 1.0]])
CASES = {
    "vol0": ((48, 44, 30), (24, 22, 15), (10, 9, 6), AFFINE0),
    "vol1": ((40, 48, 28), (19, 25, 13), (8, 11, 6), AFFINE1),
    "vol2": ((44, 40, 24), (32, 9, 12), (6, 5, 5), AFFINE2),  # off the diagonal: i and j ranges do not overlap
}
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 240
TRAIN_TIMEOUT_S = 240


def sessions_module() -> Any:
    """The app's ``lib/sessions.py`` loaded by path (the app folder is not a package)."""
    spec = importlib.util.spec_from_file_location("pam_monailabel_sessions", APP / "lib" / "sessions.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (1 when both are empty is not needed here: 0)."""
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def slicer_roi(first: tuple[float, ...], last: tuple[float, ...], affine: np.ndarray) -> list[int]:
    """``roi`` as 3D Slicer's MONAI Label module sends it for an ROI covering voxels ``first..last``.

    Its ROI tool takes the ROI's centre and size in RAS, maps (centre - size/2) and (centre + size/2) to IJK with
    the volume's RAS->IJK matrix, rounds them and sends them interleaved: ``[i0, i1, j0, j1, k0, k1]`` (a pair is
    reversed along an axis the matrix flips).
    """
    corners = np.c_[np.array([first, last], dtype=float), np.ones(2)] @ np.asarray(affine, dtype=float).T
    centre, size = corners[:, :3].mean(axis=0), np.abs(corners[1, :3] - corners[0, :3])
    ras_to_ijk = np.linalg.inv(affine)
    low = [round(v) for v in (ras_to_ijk @ np.r_[centre - size / 2, 1.0])[:3]]
    high = [round(v) for v in (ras_to_ijk @ np.r_[centre + size / 2, 1.0])[:3]]
    return [v for pair in zip(low, high) for v in pair]
