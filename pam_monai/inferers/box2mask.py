"""Box2Mask inference as a MONAI inferer (the inference itself is
:class:`~pam_monai.inferers.box2masker.Box2Masker`, which imports no MONAI)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from pam_monai.inferers.box2masker import Box2Masker, foreground_probability

__all__ = ["Box2MaskInferer", "foreground_probability"]


class Box2MaskInferer(Box2Masker, Inferer):
    """Turn a box on a 2D slice into a mask with a Box2Mask network, as a MONAI inferer: see
    :class:`~pam_monai.inferers.box2masker.Box2Masker` for the arguments.

    ``inferer(inputs, network, box=(r0, c0, r1, c1))`` with ``inputs`` a ``(H, W)`` slice returns a ``(H, W)``
    boolean mask inside the inclusive box; when the network finds nothing the whole box is returned.
    """

    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, box: Sequence[int], **kwargs: Any
    ) -> torch.Tensor:
        return super().__call__(inputs, network, *args, box=box, **kwargs)
