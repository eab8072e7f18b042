from pam_monai.inferers.box2mask import Box2MaskInferer, foreground_probability
from pam_monai.inferers.propagation import (
    FUSION_RULES,
    InferenceSettingError,
    PropagationInferer,
    PropagationResult,
    neighbourhood_size,
)
from pam_monai.inferers.refinement import refine_object

__all__ = [
    "FUSION_RULES",
    "Box2MaskInferer",
    "InferenceSettingError",
    "PropagationInferer",
    "PropagationResult",
    "foreground_probability",
    "neighbourhood_size",
    "refine_object",
]
