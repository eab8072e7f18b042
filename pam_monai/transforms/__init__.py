from pam_monai.transforms.intensity import (
    GuidedIntensityWindow,
    GuidedIntensityWindowd,
    apply_window,
    candidate_windows,
    guided_window,
    pooled_foreground_window,
)
from pam_monai.transforms.prompt import LoadPromptd
from pam_monai.transforms.roi import RoIWindow, SquareRoICrop, SquareRoICropd, crop_resize, paste_back, square_roi

__all__ = [
    "GuidedIntensityWindow",
    "GuidedIntensityWindowd",
    "LoadPromptd",
    "RoIWindow",
    "SquareRoICrop",
    "SquareRoICropd",
    "apply_window",
    "candidate_windows",
    "crop_resize",
    "guided_window",
    "paste_back",
    "pooled_foreground_window",
    "square_roi",
]
