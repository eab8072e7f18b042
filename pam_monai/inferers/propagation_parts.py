"""Building blocks of :mod:`pam_monai.inferers.propagator`: its result, the neighbourhood size, running regions,
stage timers, the RoI crops, paste-back, the continuity constraint, the redraw residual, the network call and input
checks."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pam_monai.data.io import ImageError, affine_spacing, is_meta_tensor, voxel_volume_ml
from pam_monai.transforms.functional import RoIWindow, apply_window, crop_resize, square_roi


def neighbourhood_size(thickness_mm: float, spacing_mm: float, max_neighbours: int) -> int:
    """Slices predicted per direction and round: ``min(int(thickness / spacing), max)``, at least 1."""
    if spacing_mm <= 0 or not np.isfinite(spacing_mm):
        raise ImageError(f"the spacing along the propagation axis must be positive, got {spacing_mm}.")
    return max(1, min(int(thickness_mm / spacing_mm), max_neighbours))


@dataclass
class PropagationResult:
    """Output of :meth:`~pam_monai.inferers.propagator.Propagator.propagate`.

    Attributes:
        labels: ``(X, Y, Z)`` int tensor, object ``label`` values where found.
        rounds: propagation rounds run.
        slices_predicted: network predictions made (slices, counting repeats).
        seconds: wall time per stage.
        prompt_slices: per label, the slice indices (along the axis) the propagation started from.
        guides: per label, the ``(H, W)`` boolean mask of each prompt slice (drawn, or Box2Mask's for a box).
        axis: the array axis the propagation ran along (normal to the prompt slices).
    """

    labels: torch.Tensor
    rounds: int = 0
    slices_predicted: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    prompt_slices: dict[int, list[int]] = field(default_factory=dict)
    guides: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)
    axis: int = 2


def result_report(
    result: PropagationResult, affine: np.ndarray | torch.Tensor, axis: int | None = None
) -> dict[str, Any]:
    """Per-object voxels, volume in ml and slices covered (along ``axis``, default the result's own), plus the
    image's shape and spacing (from its 4x4 ``affine``), rounds and seconds per stage: a JSON-ready dict."""
    axis = result.axis if axis is None else axis
    labels = result.labels.numpy()
    voxel_ml = voxel_volume_ml(affine)
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
        "spacing_mm": list(affine_spacing(affine)),
        "axis": axis,
        "objects": objects,
        "rounds": result.rounds,
        "slices_predicted": result.slices_predicted,
        "seconds": {k: round(v, 4) for k, v in result.seconds.items()},
    }


class Region:
    """Running union of in-plane ``[r0, r1) x [c0, c1)`` rectangles."""

    def __init__(self) -> None:
        self.r0 = self.c0 = None
        self.r1 = self.c1 = None

    def add(self, rows: slice, cols: slice) -> None:
        if self.r0 is None:
            self.r0, self.r1, self.c0, self.c1 = rows.start, rows.stop, cols.start, cols.stop
        else:
            self.r0, self.r1 = min(self.r0, rows.start), max(self.r1, rows.stop)
            self.c0, self.c1 = min(self.c0, cols.start), max(self.c1, cols.stop)

    def add_mask(self, mask: torch.Tensor) -> None:
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        if len(rows):
            self.add(slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))

    def bounds(self, height: int, width: int) -> tuple[int, int, int, int]:
        if self.r0 is None:
            return 0, 1, 0, 1
        return self.r0, self.r1, self.c0, self.c1


class StageTimer:
    """Wall time per stage, added up over the stage's blocks.

    CUDA kernels run asynchronously: without a barrier a stage would be charged only for launching its kernels and
    the next stage that reads a result (``int(...)``, ``.cpu()``) for running them. On a CUDA ``device`` every stage
    therefore starts and ends with ``torch.cuda.synchronize``; elsewhere there is no barrier and no cost.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cuda = device if device is not None and device.type == "cuda" else None

    def __call__(self, stage: str) -> Stage:
        return Stage(self, stage)


class Stage:
    def __init__(self, timer: StageTimer, stage: str) -> None:
        self.timer, self.stage = timer, stage

    def _sync(self) -> None:
        if self.timer.cuda is not None:
            torch.cuda.synchronize(self.timer.cuda)

    def __enter__(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.timer.seconds[self.stage] += time.perf_counter() - self.start


def all_finite(volume: torch.Tensor) -> bool:
    """No NaN or infinity; a finite sum proves it in one cheap reduction (exact check only if the sum is not)."""
    if not volume.is_floating_point():
        return True
    return bool(torch.isfinite(volume.sum())) or bool(torch.isfinite(volume).all())


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Zeros; on the CPU from ``calloc`` (numpy), so the pages of a large, mostly untouched volume cost no time
    or resident memory until written."""
    if torch.device(device).type == "cpu":
        return torch.from_numpy(np.zeros(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype))
    return torch.zeros(shape, dtype=dtype, device=device)


def paste_region(
    prediction: torch.Tensor, window: RoIWindow, height: int, width: int
) -> tuple[torch.Tensor, slice, slice]:
    """The part of :func:`~pam_monai.transforms.functional.paste_back` that can be nonzero: ``(values, rows, cols)``.

    ``paste_back(prediction, window, height, width)[:, rows, cols]`` equals ``values``; elsewhere it is 0.
    """
    rows, cols, win_rows, win_cols = window.clipped(height, width)
    if prediction.shape[-1] != window.size:
        prediction = F.interpolate(
            prediction[:, None].float(), size=(window.size, window.size), mode="bilinear", align_corners=False
        )[:, 0]
    return prediction[:, win_rows, win_cols].float(), rows, cols


def roi_crops(
    vol: torch.Tensor,
    guide_index: int,
    indices: torch.Tensor,
    mask: torch.Tensor,
    window: tuple[float, float],
    size: int,
    roi_scale: float,
    roi_min_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RoIWindow]:
    """The network's inputs for one guide of a ``(D, H, W)`` volume: ``(1, S, S)`` guide, ``(N, S, S)`` queries (both
    windowed to ``[-1, 1]``), the ``(1, S, S)`` guide mask, and the RoI window (``roi_scale`` x the mask's box, at
    least ``roi_min_size``) shared by all of them."""
    roi = square_roi(mask, roi_scale, roi_min_size)
    lo, hi = window
    # Gather only the window's part of the slices (the same crop as from whole slices).
    rows, cols, _, _ = roi.clipped(*vol.shape[1:])
    inside = RoIWindow(roi.top - rows.start, roi.left - cols.start, roi.size)
    slices = torch.cat((torch.tensor([guide_index]), indices.cpu())).to(vol.device)
    crops = apply_window(crop_resize(vol[:, rows, cols][slices], inside, size, pad_value=lo), lo, hi)
    guide_mask = crop_resize(mask[None].float(), roi, size, mode="nearest-exact")
    return crops[:1], crops[1:], guide_mask, roi


def redraw_residual(
    probabilities: torch.Tensor, guide_mask: torch.Tensor, redrawn: torch.Tensor, weight: float
) -> torch.Tensor:
    """Correct a round's ``(N, S, S)`` probabilities by what PropMask misses on the guide slice itself.

    ``redrawn`` ``(1, S, S)`` is PropMask's probability for the guide slice given its own ``(1, S, S)`` mask: where it
    falls short of the drawn mask (a boundary the image does not show) or spills over it, the network errs the same
    way on the neighbouring slices. ``clip(p + weight * (mask - redrawn), 0, 1)`` adds that error back."""
    return (probabilities + weight * (guide_mask - redrawn)).clamp(0.0, 1.0)


def continuous(probabilities: torch.Tensor, guide: torch.Tensor, shift_px: int) -> torch.Tensor:
    """Walk outward from the guide: each slice keeps only what lies within ``shift_px`` of the previous mask.

    Args:
        probabilities: ``(N, H, W)`` foreground probabilities of consecutive slices, nearest to the guide first.
        guide: ``(H, W)`` guiding mask.
        shift_px: largest outline movement between neighbouring slices.
    """
    kernel = 2 * shift_px + 1
    previous = guide.float()
    out = torch.zeros_like(probabilities)
    for i in range(len(probabilities)):
        reach = torch.nn.functional.max_pool2d(previous[None, None], kernel, stride=1, padding=shift_px)[0, 0]
        out[i] = probabilities[i] * reach
        previous = (out[i] > 0.5).float()
        if not bool(previous.any()):
            break
    return out


def forward_network(
    network: Callable[..., Any],
    guides: torch.Tensor,
    masks: torch.Tensor,
    queries: torch.Tensor,
    index: torch.Tensor,
    forward_indexed: Callable[..., Any] | None = None,
) -> list[torch.Tensor]:
    if forward_indexed is not None:
        return forward_indexed(guides, masks, queries, index)
    module = getattr(network, "module", network)
    if hasattr(module, "forward_indexed"):
        return module.forward_indexed(guides, masks, queries, index)
    # A network with only the (B, Nq) forward: one call per guiding slice.
    outputs = [network(guides[g : g + 1], masks[g : g + 1], queries[index == g][None]) for g in index.unique()]
    return [torch.cat(heads) for heads in zip(*outputs)]


def volume_3d(inputs: torch.Tensor | np.ndarray) -> torch.Tensor:
    volume = (
        inputs.as_tensor()
        if is_meta_tensor(inputs)
        else torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    )
    while volume.ndim > 3 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3:
        raise ImageError(f"the image must be 3D (one channel), got shape {tuple(volume.shape)}.")
    if min(volume.shape) < 2:
        raise ImageError(f"the image must have at least 2 voxels along each axis, got shape {tuple(volume.shape)}.")
    return volume


def voxel_spacing(inputs: torch.Tensor | np.ndarray, spacing: Sequence[float] | None) -> tuple[float, float, float]:
    if spacing is not None:
        values = tuple(float(s) for s in spacing)
    elif is_meta_tensor(inputs):
        affine = inputs.affine[0] if inputs.affine.ndim == 3 else inputs.affine
        values = affine_spacing(affine)
    else:
        values = (1.0, 1.0, 1.0)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"the voxel spacing must be 3 positive numbers, got {values}.")
    return values  # type: ignore[return-value]


def network_device(network: Callable[..., Any]) -> torch.device:
    if isinstance(network, torch.nn.Module):
        for p in network.parameters():
            return p.device
    return torch.device("cpu")


def network_input_size(network: Callable[..., Any]) -> int:
    """The square side the network was trained for (``input_size``, default 224)."""
    return int(getattr(getattr(network, "module", network), "input_size", 224))


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision for the network forwards when ``enabled`` (bfloat16; float16 on a GPU without bfloat16); a
    disabled context otherwise."""
    device_type = torch.device(device).type
    dtype = torch.bfloat16
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype, enabled=enabled)
