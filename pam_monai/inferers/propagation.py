"""PAM's bidirectional propagation as a MONAI inferer (the propagation itself is
:class:`~pam_monai.inferers.propagator.Propagator`, which imports no MONAI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from pam_monai.errors import InferenceSettingError
from pam_monai.inferers.box2mask import Box2MaskInferer
from pam_monai.inferers.propagation_parts import PropagationResult, neighbourhood_size
from pam_monai.inferers.propagator import FUSION_RULES, Propagator

__all__ = ["FUSION_RULES", "InferenceSettingError", "PropagationInferer", "PropagationResult", "neighbourhood_size"]


class PropagationInferer(Propagator, Inferer):
    """PAM's bidirectional propagation as a MONAI inferer: :class:`~pam_monai.inferers.propagator.Propagator` (see
    it for the arguments, :meth:`propagate` and :meth:`predict_slices`) whose call keeps a MetaTensor's metadata.

    ``inferer(inputs, network, box2mask_network=None, mask_prompt=..., box=..., slice_index=..., boxes=...,
    box3d=..., axis=2, spacing=None)`` with ``inputs`` ``(1, X, Y, Z)`` or ``(X, Y, Z)`` returns a
    ``(1, X, Y, Z)`` label image; a :class:`~monai.data.MetaTensor` input keeps its metadata (affine) on the output.
    Boxes are turned into masks by a :class:`~pam_monai.inferers.box2mask.Box2MaskInferer` unless one is given.
    """

    box2mask_type = Box2MaskInferer

    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        labels = super().__call__(inputs, network, *args, **kwargs)
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(labels, meta=dict(inputs.meta))
            out.is_batch = inputs.is_batch
            return out
        return labels
