"""The inference section's datalist and ``prepare_batch`` (``configs/inference.json``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from pam_monai.cli.segment import find_cases
from pam_monai.errors import PromptError
from pam_monai.inferers import PropagationInferer
from pam_monai.predictor import PAMPredictor

__all__ = ["PromptInferer", "datalist", "prepare_prompt_batch", "require_cases"]


def datalist(
    image: str | os.PathLike | None, prompt: Any, dataset_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """The cases to segment: ``image`` with ``prompt``, or every image of ``dataset_dir`` with its prompt file.

    In ``dataset_dir``, ``NAME.nii.gz`` (or any image MONAI reads, or a DICOM folder) pairs with ``NAME.mrk.json``
    (3D Slicer ROI), ``NAME.json`` (box or prompt JSON) or ``NAME_prompt.nii.gz`` (mask prompt), as for
    ``pam-monai segment-folder``.

    Returns:
        ``[{"image": ..., "prompt": ...}, ...]``; empty when neither ``image`` nor ``dataset_dir`` is given
        (:func:`require_cases` then stops the run), so that the config can be parsed and checked without data.

    Raises:
        PromptError: an image of ``dataset_dir`` without a prompt file, or both ``image`` and ``dataset_dir``.
    """
    if image and dataset_dir:
        raise PromptError("give either --image (with --prompt) or --dataset_dir, not both.")
    if image:
        return [{"image": str(image), "prompt": prompt}]
    if not dataset_dir:
        return []
    cases = find_cases(dataset_dir, dataset_dir)
    missing = [name for name, _, found in cases if found is None]
    if missing:
        raise PromptError(
            f"{dataset_dir}: no prompt file for {', '.join(missing)} (NAME.mrk.json, NAME.json or NAME_prompt.nii.gz)."
        )
    return [{"image": str(path), "prompt": str(found)} for _, path, found in cases]


def require_cases(items: list[dict[str, Any]]) -> int:
    """The number of cases, or a one-line :class:`PromptError` when there is nothing to segment."""
    if not items:
        raise PromptError("nothing to segment: give --image and --prompt, or --dataset_dir with images and prompts.")
    if any(item.get("prompt") in (None, "") for item in items):
        raise PromptError("no prompt: give --prompt (a mask file, a box or prompt JSON, or a .mrk.json ROI).")
    return len(items)


def _unbatch(value: Any) -> Any:
    """One item's value from a collated batch of one.

    The DataLoader's collation keeps a prompt's nesting but wraps its leaves: numbers become tensors of shape
    ``(1,)``, strings lists of one, images gain a batch dimension. This undoes that, leaf by leaf.
    """
    if isinstance(value, torch.Tensor):
        single = value[0] if value.ndim >= 1 and value.shape[0] == 1 else value
        if single.ndim == 0:
            return int(single) if not single.is_floating_point() else float(single)
        return single
    if isinstance(value, Mapping):
        return {k: _unbatch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and isinstance(value[0], (str, bytes)):
            return value[0]
        return [_unbatch(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def _unbatch_args(args: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: _unbatch(value) for key, value in args.items()}
    for key in ("box", "box3d"):
        if key in out and out[key] is not None:
            out[key] = tuple(int(v) for v in out[key])
    return out


def prepare_prompt_batch(
    batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict[str, Any]]:
    """``prepare_batch`` for ``SupervisedEvaluator``: the image goes to the inferer, the prompt as keywords.

    Expects a batch of one item (propagation works per volume) with ``image`` (``(1, 1, X, Y, Z)``) and
    ``prompt_args`` (from :class:`~pam_monai.transforms.LoadPromptd`) and optionally ``label``.

    Returns:
        ``(image, label or None, (), inferer keyword arguments)``.
    """
    image = batchdata["image"]
    if image.shape[0] != 1:
        raise ValueError(f"prompted propagation runs one volume at a time; got a batch of {image.shape[0]}.")
    label = batchdata.get("label")
    return (
        image.to(device=device, non_blocking=non_blocking) if device is not None else image,
        label,
        (),
        _unbatch_args(batchdata["prompt_args"]),
    )


class PromptInferer(Inferer):
    """The inference section's inferer: every prompt of :func:`pam_monai.prompts.parse.parse_prompt` on one volume.

    A new segmentation (masks on any slices, boxes on one or several slices, a 3D box) goes to ``inferer``
    directly; a correction (``previous`` with masks, boxes or ``clicks``) goes through
    :meth:`pam_monai.predictor.PAMPredictor.prompt`, which recomputes only the slices between the corrected
    slice's neighbouring guides and keeps the rest of the previous result.

    Args:
        inferer: the configured :class:`~pam_monai.inferers.PropagationInferer` (its settings apply to both).
    """

    def __init__(self, *, inferer: PropagationInferer) -> None:
        super().__init__()
        self.inferer = inferer

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Segment ``inputs`` (``(1, 1, X, Y, Z)``) from the prompt in ``kwargs``; returns labels of that shape."""
        if kwargs.get("previous") is None and not kwargs.get("clicks"):
            return self.inferer(inputs, network, *args, **kwargs)
        predictor = PAMPredictor(
            propmask=network, box2mask=self.inferer.box2mask_network, inferer=self.inferer, device=inputs.device
        )
        image = inputs[0, 0]
        if isinstance(inputs, MetaTensor):
            affine = torch.as_tensor(inputs.affine)
            image = MetaTensor(image.as_tensor(), affine=affine[0] if affine.ndim == 3 else affine)
        predictor.set_image(image)
        labels = predictor.prompt(kwargs).labels.to(inputs.device).reshape(inputs.shape)
        if not isinstance(inputs, MetaTensor):
            return labels
        out = MetaTensor(labels, meta=dict(inputs.meta))
        out.is_batch = inputs.is_batch
        return out
