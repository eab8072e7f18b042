"""Output operators: the NIfTI mask, the STL surface and the JSON report (the DICOM SEG is the SDK's writer).

Everything is written into the run's staging folder; the application moves the files into the output folder only
when the whole graph succeeded, so a failed run leaves no partial outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.core import Fragment, Operator, OperatorSpec

from .common import LPS_FROM_RAS, RunState, Stopwatch

__all__ = ["NIFTI_NAME", "REPORT_NAME", "STL_NAME", "PAMResultWriterOperator", "surface_mesh", "write_binary_stl"]

_LOG = logging.getLogger("pam.deploy")
NIFTI_NAME = "pam_seg.nii.gz"
STL_NAME = "pam_surface.stl"
REPORT_NAME = "pam_report.json"


def surface_mesh(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on a binary ``(X, Y, Z)`` mask: ``(vertices in world mm through affine, faces)``.

    The mask is padded by one voxel so that objects touching the border give closed surfaces; the faces are wound
    so that their normals point out of the object whatever the handedness of ``affine``.
    """
    from skimage.measure import marching_cubes

    padded = np.pad(np.asarray(mask, dtype=np.float32), 1)
    vertices, faces, _, _ = marching_cubes(padded, level=0.5)
    vertices = vertices.astype(np.float64) - 1.0  # back to the unpadded voxel indices
    world = vertices @ affine[:3, :3].T + affine[:3, 3]
    triangles = world[faces]
    signed_volume = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum() / 6.0
    if signed_volume < 0:
        faces = faces[:, ::-1]
    return world, faces


def write_binary_stl(path: Path, vertices: np.ndarray, faces: np.ndarray, header: str) -> None:
    """A binary STL file (80-byte header, facet count, per facet: normal, 3 vertices, attribute)."""
    triangles = vertices[faces].astype(np.float64)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    record = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    facets = np.zeros(len(faces), dtype=record)
    facets["normal"] = normals
    facets["vertices"] = triangles
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii", "replace")[:80].ljust(80, b" "))
        handle.write(np.uint32(len(faces)).tobytes())
        handle.write(facets.tobytes())


class PAMResultWriterOperator(Operator):
    """Write the segmentation as a NIfTI label image, an STL surface (patient coordinates, mm) and a JSON report.

    Named input:
        result: dict from :class:`PAMOperator`.

    Files (in the staging folder):
        ``pam_seg.nii.gz``: object labels on the input grid, affine = the input's (RAS, as NIfTI stores it).
        ``pam_surface.stl``: marching-cubes surface of all objects in DICOM patient coordinates (LPS, mm — the
        convention of 3D Slicer and of DICOM viewers; header says ``SPACE=LPS``).
        ``pam_report.json``: per object voxels and volume in ml, slices, rounds, seconds per stage.
    """

    def __init__(self, fragment: Fragment, *args, state: RunState, **kwargs) -> None:
        self.state = state
        self.input_name_result = "result"
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.input_name_result)

    def compute(self, op_input, op_output, context):  # noqa: ANN001
        result = op_input.receive(self.input_name_result)
        if result is None or self.state.failed:
            return
        with Stopwatch(self.state, "write"):
            self.write(result)

    def write(self, result: dict[str, Any]) -> None:
        from pam_monai.data.io import save_label_image, write_atomic

        staging = self.state.staging
        labels, affine_ras = result["labels"], np.asarray(result["affine_ras"], dtype=np.float64)
        save_label_image(labels, affine_ras, staging / NIFTI_NAME)
        affine_lps = LPS_FROM_RAS @ affine_ras
        vertices, faces = surface_mesh(labels > 0, affine_lps)
        header = f"PAM surface, SPACE=LPS, mm, {len(faces)} facets"
        write_atomic(staging / STL_NAME, lambda temporary: write_binary_stl(temporary, vertices, faces, header))
        report = dict(result["report"])
        report["surface"] = {
            "facets": int(len(faces)),
            "space": "LPS",
            "bounds_mm": {"min": vertices.min(axis=0).round(3).tolist(), "max": vertices.max(axis=0).round(3).tolist()},
        }
        report["affine_ras"] = affine_ras.round(6).tolist()
        self.state.info["report"] = report
        write_atomic(staging / REPORT_NAME, lambda temporary: temporary.write_text(json.dumps(report, indent=2)))
        _LOG.info("wrote %s, %s and %s", NIFTI_NAME, STL_NAME, REPORT_NAME)
