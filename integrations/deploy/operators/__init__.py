"""Operators of the PAM MONAI Deploy application (see ``integrations/deploy/README.md``)."""

from .common import PAMInputError, RunState, SeriesGeometry, series_geometry
from .input_operators import CheckedDICOMSeriesToVolumeOperator, NiftiVolumeLoaderOperator
from .output_operators import NIFTI_NAME, REPORT_NAME, STL_NAME, PAMResultWriterOperator
from .pam_operator import ModelFiles, PAMOperator, PreparedPrompt, prepare_prompt, resolve_models

__all__ = [
    "NIFTI_NAME",
    "REPORT_NAME",
    "STL_NAME",
    "CheckedDICOMSeriesToVolumeOperator",
    "ModelFiles",
    "NiftiVolumeLoaderOperator",
    "PAMInputError",
    "PAMOperator",
    "PAMResultWriterOperator",
    "PreparedPrompt",
    "RunState",
    "SeriesGeometry",
    "prepare_prompt",
    "resolve_models",
    "series_geometry",
]
