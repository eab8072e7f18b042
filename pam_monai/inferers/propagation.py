"""Bidirectional slice-to-slice propagation of a 2D prompt through a 3D volume (PAM paper).

Each round crops a square RoI around every current guiding mask, predicts the next ``Z`` slices outward from it
(both directions, all objects, one batched forward), pastes the predictions back and averages overlapping votes.
A direction stops at the volume edge, at the prompt's limits, at an empty prediction, or when its outermost
mask is smaller than ``min_guide_area``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from scipy import ndimage
from tqdm.auto import tqdm

from pam_monai.data.io import ImageError
from pam_monai.errors import InferenceSettingError
from pam_monai.inferers.box2mask import Box2MaskInferer, foreground_probability
from pam_monai.inferers.propagation_parts import (
    _all_finite,
    _continuous,
    _device,
    _forward,
    _paste_region,
    _Region,
    _spacing,
    _Timer,
    _volume_3d,
    _zeros,
    network_input_size,
)
from pam_monai.inferers.random_walker import WalkerRegion, extent, prompt_planes, random_walker_probability
from pam_monai.prompts.core import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    PromptError,
    blank_value,
    box3d_seed_boxes,
    mask_prompts_from_volume,
    plane_axes,
    require_contrast,
    validate_box,
)
from pam_monai.transforms.intensity import apply_window, guided_window
from pam_monai.transforms.roi import RoIWindow, crop_resize, square_roi

__all__ = ["InferenceSettingError", "PropagationInferer", "PropagationResult", "neighbourhood_size"]



def neighbourhood_size(thickness_mm: float, spacing_mm: float, max_neighbours: int) -> int:
    """Slices predicted per direction and round: ``min(int(thickness / spacing), max)``, at least 1."""
    if spacing_mm <= 0 or not np.isfinite(spacing_mm):
        raise ImageError(f"the spacing along the propagation axis must be positive, got {spacing_mm}.")
    return max(1, min(int(thickness_mm / spacing_mm), max_neighbours))


@dataclass
class PropagationResult:
    """Output of :meth:`PropagationInferer.propagate`.

    Attributes:
        labels: ``(X, Y, Z)`` int tensor, object ``label`` values where found.
        rounds: propagation rounds run.
        slices_predicted: network predictions made (slices, counting repeats).
        seconds: wall time per stage.
        prompt_slices: per label, the slice indices (along the axis) the propagation started from.
        axis: the array axis the propagation ran along (normal to the prompt slices).
    """

    labels: torch.Tensor
    rounds: int = 0
    slices_predicted: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    prompt_slices: dict[int, list[int]] = field(default_factory=dict)
    axis: int = 2


@dataclass
class _Front:
    """One direction of one object: the guide slice, its mask, the direction and the last slice it may reach."""

    obj: int
    index: int
    mask: torch.Tensor
    step: int
    limit: int


@dataclass
class _WalkerOpinion:
    """A random walker's ``probability`` of one object on ``region`` of the volume, and its ``weight``."""

    weight: float
    probability: torch.Tensor
    region: WalkerRegion


class PropagationInferer(Inferer):
    """PAM's bidirectional propagation as a MONAI inferer.

    Args:
        thickness_mm: physical neighbourhood predicted per round on each side (paper: 20 mm).
        max_neighbours: cap on the slices per side and round.
        min_guide_area: smallest predicted area (pixels) that may guide the next round; the same both ways.
        roi_scale: RoI side relative to the guiding mask's bounding box.
        roi_min_size: smallest RoI side in pixels.
        box3d_seeds: slices a 3D box starts from.
        keep_connected: keep only 3D connected components touching a prompt slice's mask.
        max_shift_px: how far (pixels) an object's outline may move from one slice to the next; predictions
            beyond it are dropped, so a weak boundary cannot let the mask leak away. ``None``: automatic,
            ``max(3, ceil(2 * slice spacing / pixel spacing))``; ``0``: no constraint.
        max_batch: largest number of query slices per forward pass.
        box2mask_inferer: turns box prompts into masks (default :class:`Box2MaskInferer`).
        box2mask_network: the Box2Mask network used when a call does not pass one (bundle configs set it here).
        progress: show a tqdm bar on stderr.
        amp: run the networks under ``torch.autocast`` (bfloat16; float16 on a GPU without bfloat16). Faster on
            GPUs with tensor cores; the masks may differ from float32 at a few boundary pixels. Off by default.
        flip_tta: test-time augmentation: PropMask also sees every round mirrored left-right and the two
            probabilities are averaged. Twice the network cost; steadier masks from an under-trained network.
        compile: run PropMask's forward through ``torch.compile`` (dynamic shapes; on CUDA with CUDA graphs,
            ``mode="reduce-overhead"``). Pays a compilation on the first call; useful for a GPU serving many
            prompts. Off by default (on the CPU the eager forward is already dominated by convolutions).
        walker_weight: a second opinion for mask prompts: weight of a 3D random walker's object probability
            (seeded from the prompts, on a region that covers PropMask's result) in the final average with
            PropMask's. The walker only follows image edges, so it fails elsewhere than the network: it trims
            leaks and overshoot past an object's end that the image shows, and fills what it is sure of.
            ``0`` (default): PropMask alone, as in the paper.
        walker_weight_box: the same for box prompts, whose walker is seeded with Box2Mask's mask and background
            outside the box (``None``: ``walker_weight``).
        walker_beta: the walker's edge weight on intensities scaled to [0, 1]: larger stops it at fainter edges.
        walker_max_voxels: larger walker regions are walked on a coarser grid (whole-factor block means).

    ``inferer(inputs, network, box2mask_network=None, mask_prompt=..., box=..., slice_index=..., box3d=...,
    axis=2, spacing=None)`` with ``inputs`` ``(1, X, Y, Z)`` or ``(X, Y, Z)`` returns a ``(1, X, Y, Z)`` label
    image; a :class:`~monai.data.MetaTensor` input keeps its metadata (affine) on the output.
    """

    def __init__(
        self,
        thickness_mm: float = 20.0,
        max_neighbours: int = 40,
        min_guide_area: int = 16,
        roi_scale: float = 1.5,
        roi_min_size: int = 16,
        box3d_seeds: int = 3,
        keep_connected: bool = True,
        max_shift_px: int | None = None,
        max_batch: int = 64,
        box2mask_inferer: Box2MaskInferer | None = None,
        box2mask_network: Callable[..., Any] | None = None,
        progress: bool = False,
        amp: bool = False,
        flip_tta: bool = False,
        compile: bool = False,
        walker_weight: float = 0.0,
        walker_weight_box: float | None = None,
        walker_beta: float = 130.0,
        walker_max_voxels: int = 262_144,
    ) -> None:
        super().__init__()
        if not thickness_mm > 0:
            raise InferenceSettingError(f"thickness_mm must be positive, got {thickness_mm}.")
        self.thickness_mm = thickness_mm
        self.max_neighbours = max_neighbours
        self.min_guide_area = min_guide_area
        self.roi_scale = roi_scale
        self.roi_min_size = roi_min_size
        self.box3d_seeds = box3d_seeds
        self.keep_connected = keep_connected
        self.max_shift_px = max_shift_px
        self.max_batch = max_batch
        self.box2mask_inferer = box2mask_inferer or Box2MaskInferer()
        self.box2mask_network = box2mask_network
        self.progress = progress
        self.amp = bool(amp)
        self.flip_tta = bool(flip_tta)
        self.compile = bool(compile)
        self._compiled: tuple[Any, Callable[..., Any]] | None = None
        self.walker_weight = float(walker_weight)
        self.walker_weight_box = self.walker_weight if walker_weight_box is None else float(walker_weight_box)
        for name, weight in (("walker_weight", self.walker_weight), ("walker_weight_box", self.walker_weight_box)):
            if not 0.0 <= weight <= 1.0:
                raise InferenceSettingError(f"{name} must be in [0, 1], got {weight}.")
        if not walker_beta > 0:
            raise InferenceSettingError(f"walker_beta must be positive, got {walker_beta}.")
        self.walker_beta = float(walker_beta)
        if walker_max_voxels < 1:
            raise InferenceSettingError(f"walker_max_voxels must be positive, got {walker_max_voxels}.")
        self.walker_max_voxels = int(walker_max_voxels)

    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        result = self.propagate(inputs, network, *args, **kwargs)
        # Same leading (batch/channel) dims as the input, at least one channel.
        leading = tuple(inputs.shape[:-3]) or (1,)
        labels = result.labels.reshape(*leading, *result.labels.shape)
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(labels, meta=dict(inputs.meta))
            out.is_batch = inputs.is_batch
            return out
        return labels

    @torch.inference_mode()
    def propagate(
        self,
        inputs: torch.Tensor | np.ndarray,
        network: Callable[..., Any],
        box2mask_network: Callable[..., Any] | None = None,
        *,
        mask_prompt: torch.Tensor | np.ndarray | None = None,
        box: Sequence[int] | None = None,
        slice_index: int | None = None,
        box3d: Sequence[int] | None = None,
        axis: int = 2,
        spacing: Sequence[float] | None = None,
        label: int = 1,
        thickness_mm: float | None = None,
    ) -> PropagationResult:
        """Segment the prompted object(s); see the class docstring for the arguments.

        Exactly one of ``mask_prompt`` (a label volume on the image grid, nonzero on one slice; label values
        1..N are N objects), ``box`` with ``slice_index`` (inclusive ``(r0, c0, r1, c1)`` in the slice plane) or
        ``box3d`` (inclusive ``(i0, j0, k0, i1, j1, k1)``) is required; boxes need ``box2mask_network``.
        """
        box2mask_network = box2mask_network if box2mask_network is not None else self.box2mask_network
        volume = _volume_3d(inputs)
        plane_axes(axis)
        if not _all_finite(volume):
            raise ImageError("the image contains NaN or infinite intensities.")
        spacings = _spacing(inputs, spacing)
        depth_spacing = float(spacings[axis])
        pixel_spacing = min(float(spacings[a]) for a in range(3) if a != axis)
        shift_px = self.max_shift_px
        if shift_px is None:
            shift_px = max(3, int(np.ceil(2 * depth_spacing / pixel_spacing)))
        z = neighbourhood_size(
            self.thickness_mm if thickness_mm is None else thickness_mm, depth_spacing, self.max_neighbours
        )
        device = _device(network)
        timer = _Timer(device)
        # A view when the image is already float32 on the device (it is only read): no copy of the volume. Slices are
        # cut from it as (RoI) crops, so a strided layout costs nothing.
        vol = volume.to(device=device, dtype=torch.float32).movedim(axis, 0)
        seeds, limits = self._seeds(
            vol, axis, volume.shape, mask_prompt, box, slice_index, box3d, label, box2mask_network, timer
        )
        result = PropagationResult(labels=torch.empty(0))
        result.seconds = timer.seconds
        labels = sorted({s.label for s in seeds})
        obj_of = {lab: i for i, lab in enumerate(labels)}
        result.prompt_slices = {lab: sorted(s.slice_index for s in seeds if s.label == lab) for lab in labels}
        result.axis = axis

        with timer("normalise"):
            windows = []
            for lab in labels:
                own = [s for s in seeds if s.label == lab]
                windows.append(
                    guided_window(torch.stack([vol[s.slice_index] for s in own]), torch.stack([s.mask for s in own]))
                )

        prob_sum = _zeros((len(labels), *vol.shape), torch.float32, device)
        votes = torch.zeros((len(labels), vol.shape[0]), dtype=torch.float32, device=device)
        # In-plane rows / columns that may hold a nonzero vote: everything outside stays 0 to the end.
        touched = _Region()
        fronts = []
        for seed in seeds:
            o = obj_of[seed.label]
            prob_sum[o, seed.slice_index] += seed.mask.float()
            touched.add_mask(seed.mask)
            votes[o, seed.slice_index] += 1
            lower, upper = self._front_limits(seed, seeds, limits[seed.label])
            fronts += [
                _Front(o, seed.slice_index, seed.mask, -1, lower),
                _Front(o, seed.slice_index, seed.mask, 1, upper),
            ]

        bar = tqdm(desc="propagating", unit="slice", disable=not self.progress, leave=False)
        while fronts := [f for f in fronts if f.index != f.limit]:
            result.rounds += 1
            fronts = self._round(
                vol, network, fronts, windows, z, prob_sum, votes, timer, result, bar, shift_px or None, touched
            )
        bar.close()

        with timer("random_walker"):
            walker = self._walker_opinions(vol, seeds, obj_of, prob_sum, votes)
        with timer("paste_back"):
            result.labels = self._finalise(prob_sum, votes, seeds, obj_of, labels, limits, axis, touched, walker).cpu()
        return result

    def _walker_opinions(
        self,
        vol: torch.Tensor,
        seeds: list[MaskPrompt],
        obj_of: dict[int, int],
        prob_sum: torch.Tensor,
        votes: torch.Tensor,
    ) -> dict[int, _WalkerOpinion]:
        """Per object with a nonzero walker weight: the weight, the walker's probability and its region."""
        opinions: dict[int, _WalkerOpinion] = {}
        volume: np.ndarray | None = None
        for lab, o in obj_of.items():
            own = [s for s in seeds if s.label == lab]
            weight = self.walker_weight_box if any(s.box is not None for s in own) else self.walker_weight
            if weight == 0.0:
                continue
            if volume is None:  # one host copy of the volume for all objects (it may live on a GPU)
                volume = vol.cpu().numpy()
            # The region covers PropMask's result, so that the walker judges all of it and its faces (background
            # seeds) do not cut a long object short.
            cover = extent(prob_sum[o] > 0.5 * votes[o][:, None, None], margin=3)
            probability, region = random_walker_probability(
                volume, prompt_planes(own), beta=self.walker_beta, max_voxels=self.walker_max_voxels, cover=cover
            )
            opinions[o] = _WalkerOpinion(weight, torch.from_numpy(probability).to(prob_sum.device), region)
        return opinions

    def _seeds(
        self,
        vol: torch.Tensor,
        axis: int,
        shape: tuple[int, ...],
        mask_prompt: torch.Tensor | np.ndarray | None,
        box: Sequence[int] | None,
        slice_index: int | None,
        box3d: Sequence[int] | None,
        label: int,
        box2mask_network: Callable[..., Any] | None,
        timer: _Timer,
    ) -> tuple[list[MaskPrompt], dict[int, tuple[int, int, tuple[int, ...] | None]]]:
        """Masks on slices to start from, and per label the slice range (and in-plane box) to stay within."""
        given = sum(p is not None for p in (mask_prompt, box, box3d))
        if given != 1:
            raise PromptError("give exactly one prompt: a mask prompt, a box with its slice, or a 3D box.")
        depth = vol.shape[0]
        if mask_prompt is not None:
            prompt = torch.as_tensor(
                np.asarray(mask_prompt)
                if not isinstance(mask_prompt, torch.Tensor)
                else mask_prompt.as_tensor()
                if isinstance(mask_prompt, MetaTensor)
                else mask_prompt
            )
            spatial = tuple(prompt.shape[-3:]) if prompt.ndim >= 3 else tuple(prompt.shape)
            if spatial != tuple(shape):
                raise PromptError(f"the mask prompt's grid {spatial} differs from the image's {tuple(shape)}.")
            seeds = mask_prompts_from_volume(prompt, axis)
            for s in seeds:
                s.mask = s.mask.to(vol.device)
                if not bool(torch.isfinite(vol[s.slice_index][s.mask]).all()):
                    raise ImageError("the image has non-finite values under the prompt.")
                rows, cols = torch.nonzero(s.mask.any(1))[:, 0], torch.nonzero(s.mask.any(0))[:, 0]
                bounds = (int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max()))
                require_contrast(vol[s.slice_index], bounds, s.slice_index)
            return seeds, {s.label: (0, depth - 1, None) for s in seeds}
        if box2mask_network is None:
            raise ValueError("box prompts need a Box2Mask network (box2mask_network=...).")
        if box is not None:
            if slice_index is None:
                raise PromptError("a 2D box needs the index of its slice (slice_index).")
            validate_box(tuple(box), int(slice_index), shape, axis)  # type: ignore[arg-type]
            boxes = [BoxPrompt(int(slice_index), tuple(int(v) for v in box), label)]  # type: ignore[arg-type]
            require_contrast(vol[int(slice_index)], boxes[0].box, int(slice_index))
            limits = {label: (0, depth - 1, None)}
        else:
            assert box3d is not None
            if len(box3d) != 6:
                raise PromptError(f"a 3D box needs 6 numbers i0,j0,k0,i1,j1,k1, got {len(box3d)}.")
            prompt3d = Box3DPrompt(tuple(int(v) for v in box3d[:3]), tuple(int(v) for v in box3d[3:]), label)  # type: ignore[arg-type]
            seed_boxes = box3d_seed_boxes(prompt3d, shape, axis, self.box3d_seeds)
            # Seed slices on padding inside the box are skipped; a box that is blank throughout is an error.
            boxes = [b for b in seed_boxes if blank_value(vol[b.slice_index], b.box) is None]
            if not boxes:
                raise PromptError(
                    f"the 3D box {tuple(int(v) for v in box3d)} is blank (one constant intensity) on its seed slices "
                    f"{[b.slice_index for b in seed_boxes]}: put it around a part of the image that shows the object."
                )
            limits = {label: (prompt3d.start[axis], prompt3d.stop[axis], boxes[0].box)}
        seeds = []
        with timer("box2mask"):
            for b in boxes:
                with self._autocast(vol.device):
                    mask = self.box2mask_inferer(vol[b.slice_index], box2mask_network, box=b.box)
                seeds.append(MaskPrompt(b.slice_index, mask.to(vol.device), b.label, b.box))
        return seeds, limits

    @staticmethod
    def _front_limits(
        seed: MaskPrompt, seeds: list[MaskPrompt], limits: tuple[int, int, tuple[int, ...] | None]
    ) -> tuple[int, int]:
        """Seeds of one object propagate up to their neighbouring seed: slices between two seeds get two votes."""
        lower, upper = limits[0], limits[1]
        for other in seeds:
            if other.label != seed.label or other.slice_index == seed.slice_index:
                continue
            if other.slice_index < seed.slice_index:
                lower = max(lower, other.slice_index + 1)
            else:
                upper = min(upper, other.slice_index - 1)
        return min(lower, seed.slice_index), max(upper, seed.slice_index)

    def _round(
        self,
        vol: torch.Tensor,
        network: Callable[..., Any],
        fronts: list[_Front],
        windows: list[tuple[float, float]],
        z: int,
        prob_sum: torch.Tensor,
        votes: torch.Tensor,
        timer: _Timer,
        result: PropagationResult,
        bar: tqdm,
        shift_px: int | None = None,
        touched: _Region | None = None,
    ) -> list[_Front]:
        """Predict the next ``z`` slices of every front in one batch; return the fronts that go on.

        Predictions are only ever nonzero inside their RoI window, so paste-back, the continuity constraint and
        the vote update work on the window's part of the slice (identical results, no full-slice arrays).
        """
        size = network_input_size(network)
        height, width = vol.shape[1:]
        with timer("normalise"):
            plans, guides, guide_masks, queries, guide_index = [], [], [], [], []
            for g, front in enumerate(fronts):
                stop = front.index + front.step * z
                stop = min(stop, front.limit) if front.step > 0 else max(stop, front.limit)
                indices = torch.arange(front.index + front.step, stop + front.step, front.step)
                guide, query, guide_mask, window = self._roi_crops(
                    vol, front.index, indices, front.mask, windows[front.obj], size
                )
                guides.append(guide)
                queries.append(query)
                guide_masks.append(guide_mask)
                guide_index.append(torch.full((len(indices),), g, dtype=torch.long))
                plans.append((front, indices, window))
            guide_batch = torch.cat(guides)[:, None]
            mask_batch = torch.cat(guide_masks)[:, None]
            query_batch = torch.cat(queries)[:, None]
            index_batch = torch.cat(guide_index).to(vol.device)
        with timer("propagation"):
            forward = self._compiled_forward(network)
            if self.flip_tta:  # the guides are shared by every chunk: mirror them once
                mirrored_guides, mirrored_masks = guide_batch.flip(-1), mask_batch.flip(-1)
            chunks = []
            for q, i in zip(torch.split(query_batch, self.max_batch), torch.split(index_batch, self.max_batch)):
                with self._autocast(vol.device):
                    heads = _forward(network, guide_batch, mask_batch, q, i, forward)
                probability = foreground_probability(heads, size)  # in float32 whatever the forward's precision
                if self.flip_tta:
                    with self._autocast(vol.device):
                        heads = _forward(network, mirrored_guides, mirrored_masks, q.flip(-1), i, forward)
                    probability = 0.5 * (probability + foreground_probability(heads, size).flip(-1))
                chunks.append(probability)
            probabilities = torch.cat(chunks)
        result.slices_predicted += len(probabilities)
        bar.update(len(probabilities))

        next_fronts = []
        with timer("paste_back"):
            for front, indices, window in plans:
                predicted, probabilities = probabilities[: len(indices)], probabilities[len(indices) :]
                part, rows, cols = _paste_region(predicted, window, height, width)
                if touched is not None:
                    touched.add(rows, cols)
                if shift_px is not None:
                    # The guide lies inside its own window, so the constraint needs only the window's part.
                    part = _continuous(part, front.mask[rows, cols], shift_px)
                areas = (part > 0.5).flatten(1).sum(1)
                empty = torch.nonzero(areas == 0).flatten()
                # The object ends at the first empty prediction; anything beyond it is not this object.
                keep = int(empty[0]) + 1 if len(empty) else len(indices)
                # The kept slices are consecutive: one slice of the volume, in ascending order.
                first_kept, last_kept = sorted((int(indices[0]), int(indices[keep - 1])))
                block = part[:keep] if front.step > 0 else part[:keep].flip(0)
                prob_sum[front.obj, first_kept : last_kept + 1, rows, cols] += block
                votes[front.obj, first_kept : last_kept + 1] += 1
                if len(empty) or int(areas[keep - 1]) < self.min_guide_area:
                    continue
                last = int(indices[keep - 1])
                mask = prob_sum[front.obj, last] / votes[front.obj, last] > 0.5
                next_fronts.append(_Front(front.obj, last, mask, front.step, front.limit))
        return next_fronts

    def _roi_crops(
        self,
        vol: torch.Tensor,
        guide_index: int,
        indices: torch.Tensor,
        mask: torch.Tensor,
        window: tuple[float, float],
        size: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RoIWindow]:
        """The network's inputs for one guide: ``(1, S, S)`` guide, ``(N, S, S)`` queries (both windowed to
        ``[-1, 1]``), the ``(1, S, S)`` guide mask, and the RoI window shared by all of them."""
        roi = square_roi(mask, self.roi_scale, self.roi_min_size)
        lo, hi = window
        # Gather only the window's part of the slices (the same crop as from whole slices).
        rows, cols, _, _ = roi.clipped(*vol.shape[1:])
        inside = RoIWindow(roi.top - rows.start, roi.left - cols.start, roi.size)
        slices = torch.cat((torch.tensor([guide_index]), indices.cpu())).to(vol.device)
        crops = apply_window(crop_resize(vol[:, rows, cols][slices], inside, size, pad_value=lo), lo, hi)
        guide_mask = crop_resize(mask[None].float(), roi, size, mode="nearest-exact")
        return crops[:1], crops[1:], guide_mask, roi

    @torch.inference_mode()
    def predict_slices(
        self,
        inputs: torch.Tensor | np.ndarray,
        network: Callable[..., Any],
        *,
        guide_mask: torch.Tensor | np.ndarray,
        slice_index: int,
        offsets: Sequence[int],
        axis: int = 2,
    ) -> torch.Tensor:
        """What one round sees: PropMask's foreground probabilities of the slices ``slice_index + offsets``,
        each predicted straight from the one guide (no continuity constraint, no votes, no stopping).

        Args:
            inputs: ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) image.
            network: PropMask.
            guide_mask: ``(H, W)`` mask on the guide slice (the plane normal to ``axis``).
            slice_index: the guide slice.
            offsets: nonzero slice offsets, each landing inside the volume.
            axis: the propagation axis.

        Returns:
            ``(len(offsets), H, W)`` float32 probabilities on the full slice (0 outside the RoI).
        """
        volume = _volume_3d(inputs)
        plane_axes(axis)
        if not _all_finite(volume):
            raise ImageError("the image contains NaN or infinite intensities.")
        vol = volume.to(device=_device(network), dtype=torch.float32).movedim(axis, 0)
        depth, height, width = vol.shape
        mask = torch.as_tensor(guide_mask)
        if tuple(mask.shape) != (height, width):
            raise PromptError(f"the guide mask's shape {tuple(mask.shape)} differs from the slice's {(height, width)}.")
        mask = mask.to(vol.device).bool()
        if not bool(mask.any()):
            raise PromptError("the guide mask is empty.")
        indices = torch.tensor([int(slice_index) + int(o) for o in offsets], dtype=torch.long)
        if not 0 <= int(slice_index) < depth or bool(((indices < 0) | (indices >= depth)).any()) or 0 in offsets:
            raise PromptError(
                f"the guide slice and every slice_index + offset (offset != 0) must lie in 0..{depth - 1}."
            )
        size = network_input_size(network)
        window = guided_window(vol[int(slice_index)], mask)
        guide, queries, guide_crop, roi = self._roi_crops(vol, int(slice_index), indices, mask, window, size)
        with self._autocast(vol.device):
            heads = _forward(
                network,
                guide[:, None],
                guide_crop[:, None],
                queries[:, None],
                torch.zeros(len(indices), dtype=torch.long, device=vol.device),
            )
        part, rows, cols = _paste_region(foreground_probability(heads, size), roi, height, width)
        out = torch.zeros((len(indices), height, width), dtype=torch.float32, device=vol.device)
        out[:, rows, cols] = part
        return out

    def _autocast(self, device: torch.device) -> torch.autocast:
        """Mixed precision for the network forwards when ``amp`` is on (a disabled context otherwise)."""
        device_type = torch.device(device).type
        dtype = torch.bfloat16
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        return torch.autocast(device_type=device_type, dtype=dtype, enabled=self.amp)

    def _compiled_forward(self, network: Callable[..., Any]) -> Callable[..., Any] | None:
        """``torch.compile`` of the network's ``forward_indexed`` (kept for the next calls), or ``None``."""
        module = getattr(network, "module", network)
        if not self.compile or not hasattr(module, "forward_indexed"):
            return None
        if self._compiled is None or self._compiled[0] is not module:
            mode = "reduce-overhead" if _device(network).type == "cuda" else None
            self._compiled = (module, torch.compile(module.forward_indexed, dynamic=True, mode=mode))
        return self._compiled[1]

    def _finalise(
        self,
        prob_sum: torch.Tensor,
        votes: torch.Tensor,
        seeds: list[MaskPrompt],
        obj_of: dict[int, int],
        labels: list[int],
        limits: dict[int, tuple[int, int, tuple[int, ...] | None]],
        axis: int,
        touched: _Region | None = None,
        walker: dict[int, _WalkerOpinion] | None = None,
    ) -> torch.Tensor:
        """Average the votes (and the walker's opinions), threshold, keep the components touching the prompts.

        ``(D, H, W)`` -> input axes. Only the block of slices with votes and of the ``touched`` rows / columns (and
        the walker's regions) can be nonzero: the work is done on that block and the rest of the output is 0 (the
        same result as on the whole volume).
        """
        depth, height, width = prob_sum.shape[1:]
        out = _zeros((depth, height, width), torch.int16, prob_sum.device)
        voted = torch.nonzero(votes.amax(dim=0) > 0).flatten()
        if len(voted) == 0:
            return out.movedim(0, axis)
        d0, d1 = int(voted[0]), int(voted[-1]) + 1
        r0, r1, c0, c1 = touched.bounds(height, width) if touched is not None else (0, height, 0, width)
        walker = walker or {}
        for opinion in walker.values():
            ds, rs, cs = opinion.region
            d0, d1, r0, r1 = min(d0, ds.start), max(d1, ds.stop), min(r0, rs.start), max(r1, rs.stop)
            c0, c1 = min(c0, cs.start), max(c1, cs.stop)
        mean = prob_sum[:, d0:d1, r0:r1, c0:c1] / votes[:, d0:d1].clamp(min=1)[:, :, None, None]
        for o, opinion in walker.items():
            ds, rs, cs = opinion.region
            walked = torch.zeros_like(mean[o])
            walked[ds.start - d0 : ds.stop - d0, rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] = (
                opinion.probability
            )
            # The prompt slices keep their seed masks: a drawn mask is the user's word, and Box2Mask's already
            # answered the box.
            prompt_slices = sorted({s.slice_index - d0 for s in seeds if obj_of[s.label] == o})
            kept = mean[o, prompt_slices].clone()
            mean[o] = (1.0 - opinion.weight) * mean[o] + opinion.weight * walked
            mean[o, prompt_slices] = kept
        for lab, (first, last, box) in limits.items():
            o = obj_of[lab]
            mean[o, : max(first - d0, 0)] = 0
            mean[o, max(last + 1 - d0, 0) :] = 0
            if box is not None:
                br0, bc0, br1, bc1 = box
                inside = torch.zeros_like(mean[o, 0], dtype=torch.bool)
                inside[max(br0 - r0, 0) : max(br1 + 1 - r0, 0), max(bc0 - c0, 0) : max(bc1 + 1 - c0, 0)] = True
                mean[o] *= inside
        if len(labels) == 1:
            best, which = mean[0], None
        else:
            best, which = mean.max(dim=0)
        label_values = torch.tensor(labels, dtype=torch.int16, device=mean.device)
        values = label_values[which] if which is not None else label_values[0]
        block = torch.where(best > 0.5, values, torch.zeros_like(best, dtype=torch.int16))
        if self.keep_connected:
            block = self._keep_connected(block, seeds, (d0, r0, c0))
        out[d0:d1, r0:r1, c0:c1] = block
        return out.movedim(0, axis)

    @staticmethod
    def _keep_connected(
        out: torch.Tensor, seeds: list[MaskPrompt], origin: tuple[int, int, int] = (0, 0, 0)
    ) -> torch.Tensor:
        """Per label, drop 3D components that do not touch that label's prompt masks.

        ``out`` may be a block of the volume starting at ``origin`` (slice, row, column) that holds every nonzero
        voxel: components are the same as in the whole volume.
        """
        array = out.cpu().numpy()
        cleaned = np.zeros_like(array)
        d0, r0, c0 = origin
        rows, cols = slice(r0, r0 + array.shape[1]), slice(c0, c0 + array.shape[2])
        for lab in sorted({s.label for s in seeds}):
            components, count = ndimage.label(array == lab)
            if count == 0:
                continue
            touching = set()
            for s in (s for s in seeds if s.label == lab):
                k = s.slice_index - d0
                if not 0 <= k < len(array):
                    continue
                touching.update(np.unique(components[k][s.mask[rows, cols].cpu().numpy()]).tolist())
            touching.discard(0)
            cleaned[np.isin(components, sorted(touching))] = lab
        return torch.from_numpy(cleaned).to(out.device)
