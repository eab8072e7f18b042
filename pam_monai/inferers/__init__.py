from pam_monai.inferers.box2mask import Box2MaskInferer, foreground_probability
from pam_monai.inferers.propagation import PropagationInferer, PropagationResult, neighbourhood_size

__all__ = ["Box2MaskInferer", "PropagationInferer", "PropagationResult", "foreground_probability", "neighbourhood_size"]
