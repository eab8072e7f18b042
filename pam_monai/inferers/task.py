"""An inferer that feeds multi-input networks (PropMask) from MONAI engines.

MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator`` call ``inferer(inputs, network, *args, **kwargs)`` with
``inputs`` the first element returned by ``prepare_batch``. :class:`TaskInferer` unpacks that element: a tuple or
list becomes positional arguments, a mapping keyword arguments, anything else a single argument. So PropMask gets
``network(guide_image, guide_mask, query_images)`` and Box2Mask ``network(image)`` from the same engine code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from monai.inferers import Inferer

__all__ = ["TaskInferer"]


class TaskInferer(Inferer):
    """Call ``network`` with the unpacked ``inputs`` (tuple -> ``*inputs``, mapping -> ``**inputs``)."""

    def __call__(self, inputs: Any, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, Mapping):
            return network(*args, **{**inputs, **kwargs})
        if isinstance(inputs, (tuple, list)):
            return network(*inputs, *args, **kwargs)
        return network(inputs, *args, **kwargs)
