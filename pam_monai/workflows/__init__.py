"""What MONAI engines and configs driving PAM need from the library: result writing and finding the bad input
behind wrapped exceptions (the bundle's own glue lives in ``bundle/scripts``)."""

from pam_monai.workflows.inference import SavePropagationResultsd

__all__ = ["SavePropagationResultsd"]
