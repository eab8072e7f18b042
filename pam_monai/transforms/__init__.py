from pam_monai.transforms.intensity import (
    GuidedIntensityWindow,
    GuidedIntensityWindowd,
    apply_window,
    candidate_windows,
    guided_window,
    pooled_foreground_window,
)
from pam_monai.transforms.prompt import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    PromptError,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    plane_axes,
    validate_box,
)
from pam_monai.transforms.roi import RoIWindow, SquareRoICrop, SquareRoICropd, crop_resize, paste_back, square_roi

__all__ = [
    "Box3DPrompt",
    "BoxPrompt",
    "GuidedIntensityWindow",
    "GuidedIntensityWindowd",
    "MaskPrompt",
    "PromptError",
    "RoIWindow",
    "SquareRoICrop",
    "SquareRoICropd",
    "apply_window",
    "box3d_seed_boxes",
    "candidate_windows",
    "crop_resize",
    "guided_window",
    "mask_prompts_from_volume",
    "paste_back",
    "plane_axes",
    "pooled_foreground_window",
    "square_roi",
    "validate_box",
]
