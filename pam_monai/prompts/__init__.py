"""Prompts: what a user gives to say which object to segment, in one place for every front end.

A prompt is a mask on one or several slices, a 2D box on one or several slices, a 3D box, a 3D Slicer ROI markup,
or foreground/background clicks; coordinates are voxel indices of the image array in file order. The CLI, the
bundle, MONAI Label and MONAI Deploy all turn their inputs into these objects with the functions here.

One prompt form serves them all, :func:`parse_prompt` (a JSON file, JSON text or a mapping; or a bare path of a
mask-prompt image or ``.mrk.json`` ROI), with the fields

- ``mask``: label image on the image's grid, nonzero on any slices normal to ``axis`` (every marked slice guides);
- ``box`` + ``slice`` (``slice`` may be a list), or ``boxes``: ``[{"box": [r0, c0, r1, c1], "slice": k}, ...]``;
- ``box3d``: ``[i0, j0, k0, i1, j1, k1]`` (alone);
- ``clicks``: ``[[i, j, k, 1 or -1], ...]`` foreground / background clicks correcting a result;
- ``previous``: a previous result (label image) that ``mask`` / boxes / ``clicks`` correct;
- ``axis`` (default 2) and ``label`` (the object boxes and clicks are for).

e.g. ``{"mask": "slices.nii.gz", "boxes": [{"box": [10, 12, 40, 50], "slice": 30}], "axis": 2}`` or
``{"previous": "seg.nii.gz", "clicks": [[20, 31, 30, 1], [25, 40, 30, -1]], "label": 1}``.
:func:`load_prompt_files` then reads the named images onto the image's grid; ``PAMPredictor.prompt`` runs the
result (a segmentation, or a refinement of ``previous``).
"""

from pam_monai.errors import PromptError
from pam_monai.prompts.core import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    blank_value,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    place_on_grid,
    plane_axes,
    read_mask_prompt,
    require_contrast,
    validate_box,
)
from pam_monai.prompts.parse import PROMPT_FIELDS, load_prompt_files, parse_clicks, parse_prompt
from pam_monai.prompts.slicer_roi import SlicerROI, read_slicer_roi, roi_prompt

__all__ = [
    "PROMPT_FIELDS",
    "Box3DPrompt",
    "BoxPrompt",
    "MaskPrompt",
    "PromptError",
    "SlicerROI",
    "blank_value",
    "box3d_seed_boxes",
    "load_prompt_files",
    "mask_prompts_from_volume",
    "parse_clicks",
    "parse_prompt",
    "place_on_grid",
    "plane_axes",
    "read_mask_prompt",
    "read_slicer_roi",
    "require_contrast",
    "roi_prompt",
    "validate_box",
]
