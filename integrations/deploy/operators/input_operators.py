"""Input operators: a DICOM series checked to be one regular 3D grid, or a NIfTI file, as a PAM volume.

Both emit an SDK ``Image`` whose array is ``(X, Y, Z)`` float32 in file index order — for DICOM ``(column, row,
slice)`` with slices sorted along the slice normal, as MONAI's ``LoadImage`` (and so ``pam-monai segment``) reads
the same series — and whose metadata holds ``pam_affine_ras`` (index -> world mm, RAS), ``pam_source`` and, for
DICOM, ``pam_geometry`` (:class:`SeriesGeometry`: the SOP instance of every slice).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from monai.deploy.core import ConditionType, Fragment, Image, Operator, OperatorSpec
from monai.deploy.operators import DICOMSeriesToVolumeOperator

from .common import PAMInputError, RunState, guarded, one_line, series_geometry

__all__ = ["CheckedDICOMSeriesToVolumeOperator", "NiftiVolumeLoaderOperator"]

_LOG = logging.getLogger("pam.deploy")


class CheckedDICOMSeriesToVolumeOperator(DICOMSeriesToVolumeOperator):
    """The SDK's series-to-volume conversion, plus the checks PAM needs before it trusts the grid.

    The SDK sorts the instances along the slice normal and stacks them (rescale slope / intercept applied) but takes
    the slice spacing from the first two slices only; a missing or duplicated slice would silently give a distorted
    volume whose slices no longer match their instances. Here every slice position is checked (see
    :func:`series_geometry`) and the affine is rebuilt from the sorted positions.

    Named input:
        study_selected_series_list: from ``DICOMSeriesSelectorOperator``.
    Named output:
        image: ``Image`` with an ``(X, Y, Z)`` float32 array (nothing is emitted on an input error).
    """

    def __init__(self, fragment: Fragment, *args, state: RunState, source: str = "", **kwargs) -> None:
        self.state = state
        self.source = source
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context):  # noqa: ANN001
        selected = op_input.receive(self.input_name_series)
        image = guarded(self.state, "reading the DICOM series", self._volume, selected)
        self.state.mark_read()
        if image is not None:
            op_output.emit(image, self.output_name_image)

    def _volume(self, selected) -> Image:  # noqa: ANN001
        if not selected or not selected[0].selected_series:
            raise PAMInputError(
                f"{self.source}: no CT, MR or PET image series found in the DICOM files (set PAM_SERIES_RULES to "
                "select another series)."
            )
        series = selected[0].selected_series[0].series
        try:
            image = self.convert_to_image(selected)  # sorts the instances along the normal, in place
        except Exception as error:  # pixel decoding and rescaling raise many kinds of errors
            raise PAMInputError(
                f"DICOM series {series.SeriesInstanceUID}: cannot read it ({one_line(error)})."
            ) from error
        datasets = [instance.get_native_sop_instance() for instance in series.get_sop_instances()]
        geometry = series_geometry(datasets, str(series.SeriesInstanceUID))
        data = np.asarray(image.asnumpy())
        if data.shape != (geometry.slices, geometry.rows, geometry.columns):
            raise PAMInputError(
                f"DICOM series {series.SeriesInstanceUID}: pixel data of shape {data.shape} does not match "
                f"{geometry.slices} slices of {geometry.rows}x{geometry.columns}."
            )
        volume = np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32)  # (slice, row, col) -> (i, j, k)
        if not np.isfinite(volume).all():
            raise PAMInputError(f"DICOM series {series.SeriesInstanceUID} has NaN or infinite intensities.")
        study = selected[0].study
        metadata = {
            "pam_source": "dicom",
            "pam_affine_ras": geometry.affine_ras,
            "pam_geometry": geometry,
            "pam_input": {
                "kind": "dicom",
                "path": self.source,
                "study_instance_uid": str(study.StudyInstanceUID),
                "series_instance_uid": str(series.SeriesInstanceUID),
                "modality": str(series.Modality or ""),
                "series_description": str(series.SeriesDescription or ""),
                "slices": geometry.slices,
                "frame_of_reference_uid": geometry.frame_of_reference_uid,
            },
        }
        _LOG.info("DICOM series %s: %s voxels, spacing %s mm", series.SeriesInstanceUID, volume.shape, geometry.spacing)
        return Image(volume, metadata)


class NiftiVolumeLoaderOperator(Operator):
    """Read a NIfTI (or NRRD / MHA) volume with MONAI's ``LoadImage``, keeping its affine.

    (The SDK's ``NiftiDataLoader`` emits the bare array; PAM needs the spacing and the world position.)

    Named output:
        image: ``Image`` with an ``(X, Y, Z)`` float32 array (nothing is emitted on an input error).
    """

    def __init__(self, fragment: Fragment, *args, input_path: Path, state: RunState, **kwargs) -> None:
        self.input_path = Path(input_path)
        self.state = state
        self.output_name_image = "image"
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output(self.output_name_image).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):  # noqa: ANN001
        image = guarded(self.state, "reading the image", self._volume)
        self.state.mark_read()
        if image is not None:
            op_output.emit(image, self.output_name_image)

    def _volume(self) -> Image:
        from pam_monai.data.io import load_image

        volume = load_image(self.input_path)
        if volume.ndim == 4 and volume.shape[0] == 1:
            volume = volume[0]
        if volume.ndim != 3:
            raise PAMInputError(f"{self.input_path}: the image must be 3D, got shape {tuple(volume.shape)}.")
        array = np.ascontiguousarray(volume.numpy(), dtype=np.float32)
        if not np.isfinite(array).all():
            raise PAMInputError(f"{self.input_path}: the image contains NaN or infinite intensities.")
        metadata = {
            "pam_source": "nifti",
            "pam_affine_ras": np.asarray(volume.affine, dtype=np.float64),
            "pam_input": {"kind": "nifti", "path": str(self.input_path)},
        }
        return Image(array, metadata)
