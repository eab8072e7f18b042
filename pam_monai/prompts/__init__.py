"""Prompts: what a user gives to say which object to segment, in one place for every front end.

A prompt is a mask on one or several slices, a 2D box on one or several slices, a 3D box, a 3D Slicer ROI markup,
or foreground/background clicks; coordinates are voxel indices of the image array in file order. The CLI, the
bundle, MONAI Label and MONAI Deploy all turn their inputs into these objects with the functions here.
"""

from pam_monai.errors import PromptError
from pam_monai.prompts.core import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    blank_value,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    parse_prompt,
    place_on_grid,
    plane_axes,
    read_mask_prompt,
    require_contrast,
    validate_box,
)
from pam_monai.prompts.slicer_roi import SlicerROI, read_slicer_roi, roi_prompt

__all__ = [
    "Box3DPrompt",
    "BoxPrompt",
    "MaskPrompt",
    "PromptError",
    "SlicerROI",
    "blank_value",
    "box3d_seed_boxes",
    "mask_prompts_from_volume",
    "parse_prompt",
    "place_on_grid",
    "plane_axes",
    "read_mask_prompt",
    "read_slicer_roi",
    "require_contrast",
    "roi_prompt",
    "validate_box",
]
