from pam_monai.inferers.box2mask import Box2MaskInferer, foreground_probability
from pam_monai.inferers.propagation import (
    InferenceSettingError,
    PropagationInferer,
    PropagationResult,
    neighbourhood_size,
)

__all__ = [
    "Box2MaskInferer",
    "InferenceSettingError",
    "PropagationInferer",
    "PropagationResult",
    "foreground_probability",
    "neighbourhood_size",
]
