"""A stateful predictor: load the networks once, set one image, segment many prompts on it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from torch import nn

from pam_monai.data.io import ImageError, load_image, voxel_volume_ml
from pam_monai.inferers.propagation import PropagationInferer, PropagationResult
from pam_monai.networks.checkpoint import CheckpointError, build_network_from_checkpoint
from pam_monai.networks.weights import DEFAULT_BOX2MASK, DEFAULT_PROPMASK, default_checkpoints
from pam_monai.prompts.core import plane_axes
from pam_monai.prompts.slicer_roi import read_slicer_roi, roi_prompt

__all__ = ["DEFAULT_BOX2MASK", "DEFAULT_PROPMASK", "PAMPredictor", "default_checkpoints"]


class PAMPredictor:
    """Segment objects in one 3D image from 2D prompts, keeping the networks and the image loaded.

    Args:
        propmask: the PropMask network.
        box2mask: the Box2Mask network (needed for box prompts).
        inferer: the propagation inferer (default settings if omitted).
        device: where the networks run.

    Example::

        predictor = PAMPredictor.from_checkpoints()
        predictor.set_image("ct.nii.gz")
        result = predictor.segment(box=(100, 120, 160, 190), slice_index=42)
    """

    def __init__(
        self,
        *,
        propmask: nn.Module,
        box2mask: nn.Module | None = None,
        inferer: PropagationInferer | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.propmask = propmask.to(self.device).eval()
        self.box2mask = box2mask.to(self.device).eval() if box2mask is not None else None
        self.inferer = inferer or PropagationInferer()
        self.image: MetaTensor | None = None

    @classmethod
    def from_checkpoints(
        cls,
        propmask: str | os.PathLike | None = None,
        box2mask: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        **inferer_args: Any,
    ) -> PAMPredictor:
        """Build from checkpoint files (ours or the authors'); without paths, the bundle's default weights."""
        if propmask is None:
            propmask, default_box2mask = default_checkpoints()
            box2mask = box2mask or (default_box2mask if default_box2mask.exists() else None)
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA GPU is available.")
        return cls(
            propmask=build_network_from_checkpoint(propmask, kind="propmask"),
            box2mask=build_network_from_checkpoint(box2mask, kind="box2mask") if box2mask else None,
            inferer=PropagationInferer(**inferer_args),
            device=device,
        )

    def set_image(
        self, image: str | os.PathLike | MetaTensor | np.ndarray | torch.Tensor, spacing: Sequence[float] | None = None
    ) -> MetaTensor:
        """Load (from a path) or take a ``(X, Y, Z)`` image; an array gets ``spacing`` (default 1 mm) as affine."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        elif not isinstance(image, MetaTensor):
            affine = torch.diag(torch.tensor([*(spacing or (1.0, 1.0, 1.0)), 1.0], dtype=torch.float64))
            image = MetaTensor(
                torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image), affine=affine
            )
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3:
            raise ImageError(f"the image must be 3D, got shape {tuple(image.shape)}.")
        if not bool(torch.isfinite(image.as_tensor()).all()):
            raise ImageError("the image contains NaN or infinite intensities.")
        self.image = image
        return image

    @property
    def spacing(self) -> tuple[float, float, float]:
        if self.image is None:
            raise RuntimeError("call set_image() first.")
        return tuple(float(s) for s in affine_to_spacing(self.image.affine, r=3))  # type: ignore[return-value]

    def segment(
        self,
        *,
        mask_prompt: torch.Tensor | np.ndarray | None = None,
        box: Sequence[int] | None = None,
        slice_index: int | None = None,
        box3d: Sequence[int] | None = None,
        axis: int = 2,
        thickness_mm: float | None = None,
        label: int = 1,
    ) -> PropagationResult:
        """Segment the prompted object(s) in the current image; see :class:`PropagationInferer`."""
        if self.image is None:
            raise RuntimeError("call set_image() before segment().")
        plane_axes(axis)
        if (box is not None or box3d is not None) and self.box2mask is None:
            raise CheckpointError("box prompts need Box2Mask weights; none were loaded.")
        return self.inferer.propagate(
            self.image,
            self.propmask,
            self.box2mask,
            mask_prompt=mask_prompt,
            box=box,
            slice_index=slice_index,
            box3d=box3d,
            axis=axis,
            spacing=self.spacing,
            label=label,
            thickness_mm=thickness_mm,
        )

    def roi_prompt(self, roi: str | os.PathLike) -> dict[str, Any]:
        """A 3D Slicer ROI markup (``.mrk.json``) as keywords for :meth:`segment` on the current image's grid:
        ``box3d``, or ``box``, ``slice_index`` and ``axis`` for an ROI one slice thin (see
        :func:`~pam_monai.prompts.slicer_roi.roi_prompt`)."""
        if self.image is None:
            raise RuntimeError("call set_image() before roi_prompt().")
        return roi_prompt(read_slicer_roi(roi), np.asarray(self.image.affine), tuple(self.image.shape))

    def report(self, result: PropagationResult, axis: int | None = None) -> dict[str, Any]:
        """Per-object voxels, volume in ml and slices covered (along ``axis``, default the result's own), plus
        rounds and seconds per stage."""
        assert self.image is not None
        axis = result.axis if axis is None else axis
        labels = result.labels.numpy()
        voxel_ml = voxel_volume_ml(self.image.affine)
        objects = []
        for value in sorted(result.prompt_slices):
            voxels = labels == value
            count = int(voxels.sum())
            covered = np.nonzero(voxels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
            objects.append(
                {
                    "label": int(value),
                    "voxels": count,
                    "volume_ml": round(count * voxel_ml, 4),
                    "prompt_slices": result.prompt_slices[value],
                    "slices_covered": {"first": int(covered[0]), "last": int(covered[-1]), "count": len(covered)}
                    if len(covered)
                    else None,
                }
            )
        return {
            "image_shape": list(labels.shape),
            "spacing_mm": list(self.spacing),
            "axis": axis,
            "objects": objects,
            "rounds": result.rounds,
            "slices_predicted": result.slices_predicted,
            "seconds": {k: round(v, 4) for k, v in result.seconds.items()},
        }
