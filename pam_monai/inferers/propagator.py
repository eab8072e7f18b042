"""Bidirectional slice-to-slice propagation of a 2D prompt through a 3D volume (PAM paper).

Each round crops a square RoI around every current guiding mask, predicts the next ``Z`` slices outward from it
(both directions, all objects, one batched forward), pastes the predictions back and averages overlapping votes.
A direction stops at the volume edge, at the prompt's limits, at an empty prediction, or when its outermost
mask is smaller than ``min_guide_area``.

:class:`Propagator` imports no MONAI (the command line segments with it directly);
:class:`~pam_monai.inferers.propagation.PropagationInferer` is the same as a MONAI ``Inferer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pam_monai.data.io import ImageError
from pam_monai.errors import InferenceSettingError
from pam_monai.inferers.box2masker import Box2Masker, foreground_probability
from pam_monai.inferers.interpolation import check_interpolation, outline_prior
from pam_monai.inferers.propagation_finalise import finalise_labels, walker_opinions
from pam_monai.inferers.propagation_parts import (
    PropagationResult,
    Region,
    StageTimer,
    all_finite,
    autocast,
    continuous,
    forward_network,
    lazy_zeros,
    neighbourhood_size,
    network_device,
    network_input_size,
    paste_region,
    redraw_residual,
    roi_crops,
    volume_3d,
    voxel_spacing,
)
from pam_monai.inferers.propagation_seeds import front_limits, prompt_seeds
from pam_monai.prompts.core import MaskPrompt, PromptError, plane_axes
from pam_monai.transforms.functional import guided_window

__all__ = ["FUSION_RULES", "InferenceSettingError", "PropagationResult", "Propagator", "neighbourhood_size"]

FUSION_RULES = ("distance", "mean")
"""How slices between two guides of one object combine the predictions from each side."""


@dataclass
class _Front:
    """One direction of one object: the guide slice, its mask, the direction and the last slice it may reach.
    A ``weighted`` front (heading for another guide, ``fusion="distance"``) votes ``1 / |slice - origin|``."""

    obj: int
    index: int
    mask: torch.Tensor
    step: int
    limit: int
    origin: int = 0
    weighted: bool = False


class Propagator:
    """PAM's bidirectional propagation (wrapped as a MONAI inferer by
    :class:`~pam_monai.inferers.propagation.PropagationInferer`).

    Args:
        thickness_mm: physical neighbourhood predicted per round on each side (paper: 20 mm).
        max_neighbours: cap on the slices per side and round.
        min_guide_area: smallest predicted area (pixels) that may guide the next round; the same both ways.
        roi_scale: RoI side relative to the guiding mask's bounding box.
        roi_min_size: smallest RoI side in pixels.
        box3d_seeds: slices a 3D box starts from.
        fusion: how a slice between two guides of one object combines the two sides' predictions: ``"distance"``
            weights each side's vote by the inverse distance to that side's guide, ``"mean"`` averages them.
            Beyond the outermost guides each slice has one side; a one-slice prompt is the same either way.
        keep_connected: keep only 3D connected components touching a prompt slice's mask.
        max_shift_px: how far (pixels) an object's outline may move from one slice to the next; predictions
            beyond it are dropped, so a weak boundary cannot let the mask leak away. ``None``: automatic,
            ``max(3, ceil(2 * slice spacing / pixel spacing))``; ``0``: no constraint.
        max_batch: largest number of query slices per forward pass.
        box2mask_inferer: turns box prompts into masks (default: a :attr:`box2mask_type` with default settings).
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
        interpolation_weight: weight of a shape prior on the slices between two drawn guides of an object (their
            signed distance maps interpolated, :mod:`~pam_monai.inferers.interpolation`) against the votes (and
            walker); ``0``: none. One-slice prompts and slices beyond the outermost guides are unaffected.
        interpolation_softness: the prior's outline softness (pixels).
        outline_weight: weight of each round's guide outline (:func:`~pam_monai.inferers.interpolation.outline_prior`)
            mixed into the slices the round predicts from it (softness ``interpolation_softness``); below 0.5 the
            network alone still ends an object.
        residual_weight: each round also asks PropMask for its guide slice itself and adds this weight times what
            it misses there (drawn mask minus its redrawn probability) to the round's predictions
            (:func:`~pam_monai.inferers.propagation_parts.redraw_residual`); one more query per front and round.

    ``inferer(inputs, network, box2mask_network=None, mask_prompt=..., box=..., slice_index=..., boxes=...,
    box3d=..., axis=2, spacing=None)`` with ``inputs`` ``(1, X, Y, Z)`` or ``(X, Y, Z)`` returns a
    ``(1, X, Y, Z)`` label image (a plain tensor; see :class:`~pam_monai.inferers.propagation.PropagationInferer`
    for a MetaTensor that keeps the input's metadata). A MetaTensor input without ``spacing`` gives its affine's.
    """

    box2mask_type: type[Box2Masker] = Box2Masker
    """What turns box prompts into masks when no ``box2mask_inferer`` is given."""

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
        box2mask_inferer: Box2Masker | None = None,
        box2mask_network: Callable[..., Any] | None = None,
        progress: bool = False,
        amp: bool = False,
        flip_tta: bool = False,
        compile: bool = False,
        walker_weight: float = 0.0,
        walker_weight_box: float | None = None,
        walker_beta: float = 130.0,
        walker_max_voxels: int = 262_144,
        fusion: str = "distance",
        interpolation_weight: float = 0.7,
        interpolation_softness: float = 1.0,
        outline_weight: float = 0.45,
        residual_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSION_RULES:
            raise InferenceSettingError(f"fusion must be one of {', '.join(FUSION_RULES)}, got {fusion!r}.")
        self.fusion = fusion
        self.interpolation = check_interpolation(interpolation_weight, interpolation_softness)
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
        self.box2mask_inferer = box2mask_inferer or self.box2mask_type()
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
        if not 0.0 <= outline_weight < 0.5:
            raise InferenceSettingError(f"outline_weight must be in [0, 0.5), got {outline_weight}.")
        self.outline_weight = float(outline_weight)
        if not 0.0 <= residual_weight <= 1.0:
            raise InferenceSettingError(f"residual_weight must be in [0, 1], got {residual_weight}.")
        self.residual_weight = float(residual_weight)
        if not walker_beta > 0:
            raise InferenceSettingError(f"walker_beta must be positive, got {walker_beta}.")
        self.walker_beta = float(walker_beta)
        if walker_max_voxels < 1:
            raise InferenceSettingError(f"walker_max_voxels must be positive, got {walker_max_voxels}.")
        self.walker_max_voxels = int(walker_max_voxels)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """The labels of :meth:`propagate` with the input's leading (batch / channel) dims, at least one channel."""
        result = self.propagate(inputs, network, *args, **kwargs)
        leading = tuple(inputs.shape[:-3]) or (1,)
        return result.labels.reshape(*leading, *result.labels.shape)

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
        boxes: Sequence[tuple[Sequence[int], int]] | None = None,
        box3d: Sequence[int] | None = None,
        axis: int = 2,
        spacing: Sequence[float] | None = None,
        label: int = 1,
        thickness_mm: float | None = None,
        outer_guides: Sequence[MaskPrompt] = (),
    ) -> PropagationResult:
        """Segment the prompted object(s); see the class docstring for the arguments.

        The prompt is ``mask_prompt`` (a label volume on the image grid, nonzero on any slices; label values 1..N
        are N objects, each marked slice a guide), 2D boxes (``box`` with ``slice_index``, and / or ``boxes``,
        ``[(box, slice_index), ...]``; inclusive ``(r0, c0, r1, c1)`` in the slice plane, all for ``label``) or
        ``box3d`` alone (inclusive ``(i0, j0, k0, i1, j1, k1)``); masks and 2D boxes may be mixed. Boxes need
        ``box2mask_network``. Every guide keeps its mask; slices between two guides of an object are predicted from
        both and fused (``fusion``), and with the shape prior between drawn guides (``interpolation_weight``).
        ``outer_guides``: drawn guides beyond the image (a block of a larger one; slice indices relative to it):
        only the shape prior uses them, for the slices between them and the prompt's guides.
        """
        box2mask_network = box2mask_network if box2mask_network is not None else self.box2mask_network
        volume = volume_3d(inputs)
        plane_axes(axis)
        if not all_finite(volume):
            raise ImageError("the image contains NaN or infinite intensities.")
        spacings = voxel_spacing(inputs, spacing)
        depth_spacing = float(spacings[axis])
        pixel_spacing = min(float(spacings[a]) for a in range(3) if a != axis)
        shift_px = self.max_shift_px
        if shift_px is None:
            shift_px = max(3, int(np.ceil(2 * depth_spacing / pixel_spacing)))
        z = neighbourhood_size(
            self.thickness_mm if thickness_mm is None else thickness_mm, depth_spacing, self.max_neighbours
        )
        device = network_device(network)
        timer = StageTimer(device)
        # A view when the image is already float32 on the device (it is only read): no copy of the volume. Slices are
        # cut from it as (RoI) crops, so a strided layout costs nothing.
        vol = volume.to(device=device, dtype=torch.float32).movedim(axis, 0)

        def box_to_mask(index: int, box: tuple[int, int, int, int]) -> torch.Tensor:
            with timer("box2mask"), autocast(vol.device, self.amp):
                return self.box2mask_inferer(vol[index], box2mask_network, box=box)

        seeds, limits = prompt_seeds(
            vol,
            tuple(volume.shape),
            axis,
            mask_prompt=mask_prompt,
            box=box,
            slice_index=slice_index,
            boxes=boxes,
            box3d=box3d,
            label=label,
            box_to_mask=box_to_mask if box2mask_network is not None else None,
            box3d_seeds=self.box3d_seeds,
        )
        result = PropagationResult(labels=torch.empty(0))
        result.seconds = timer.seconds
        labels = sorted({s.label for s in seeds})
        obj_of = {lab: i for i, lab in enumerate(labels)}
        result.prompt_slices = {lab: sorted(s.slice_index for s in seeds if s.label == lab) for lab in labels}
        result.guides = {lab: {s.slice_index: s.mask.cpu() for s in seeds if s.label == lab} for lab in labels}
        result.axis = axis

        with timer("normalise"):
            windows = []
            for lab in labels:
                own = [s for s in seeds if s.label == lab]
                windows.append(
                    guided_window(torch.stack([vol[s.slice_index] for s in own]), torch.stack([s.mask for s in own]))
                )

        prob_sum = lazy_zeros((len(labels), *vol.shape), torch.float32, device)
        votes = torch.zeros((len(labels), vol.shape[0]), dtype=torch.float32, device=device)
        # In-plane rows / columns that may hold a nonzero vote: everything outside stays 0 to the end.
        touched = Region()
        fronts = []
        for seed in seeds:
            o = obj_of[seed.label]
            prob_sum[o, seed.slice_index] += seed.mask.float()
            touched.add_mask(seed.mask)
            votes[o, seed.slice_index] += 1
            lower, upper, below, above = front_limits(seed, seeds, limits[seed.label])
            weighted = self.fusion == "distance"
            fronts += [
                _Front(o, seed.slice_index, seed.mask, -1, lower, seed.slice_index, weighted and below),
                _Front(o, seed.slice_index, seed.mask, 1, upper, seed.slice_index, weighted and above),
            ]
        for guide in outer_guides:  # the prior's distance maps need every guide inside the worked block
            touched.add_mask(guide.mask.to(device))

        bar = tqdm(desc="propagating", unit="slice", disable=not self.progress, leave=False)
        while fronts := [f for f in fronts if f.index != f.limit]:
            result.rounds += 1
            fronts = self._round(
                vol, network, fronts, windows, z, prob_sum, votes, timer, result, bar, shift_px or None, touched
            )
        bar.close()

        with timer("random_walker"):
            walker = walker_opinions(
                vol,
                seeds,
                obj_of,
                prob_sum,
                votes,
                weight_mask=self.walker_weight,
                weight_box=self.walker_weight_box,
                beta=self.walker_beta,
                max_voxels=self.walker_max_voxels,
            )
        with timer("paste_back"):
            labels_out = finalise_labels(
                prob_sum, votes, seeds, obj_of, labels, limits, axis, touched, walker, self.keep_connected,
                self.interpolation, [*outer_guides],
            )  # fmt: skip
            result.labels = labels_out.cpu()
        return result

    def _round(
        self,
        vol: torch.Tensor,
        network: Callable[..., Any],
        fronts: list[_Front],
        windows: list[tuple[float, float]],
        z: int,
        prob_sum: torch.Tensor,
        votes: torch.Tensor,
        timer: StageTimer,
        result: PropagationResult,
        bar: tqdm,
        shift_px: int | None = None,
        touched: Region | None = None,
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
                guide, query, guide_mask, window = roi_crops(
                    vol, front.index, indices, front.mask, windows[front.obj], size, self.roi_scale, self.roi_min_size
                )
                if self.residual_weight > 0:  # the guide slice itself first: how the network redraws its mask
                    query = torch.cat((guide, query))
                guides.append(guide)
                queries.append(query)
                guide_masks.append(guide_mask)
                guide_index.append(torch.full((len(query),), g, dtype=torch.long))
                plans.append((front, indices, window, guide_mask))
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
                with autocast(vol.device, self.amp):
                    heads = forward_network(network, guide_batch, mask_batch, q, i, forward)
                probability = foreground_probability(heads, size)  # in float32 whatever the forward's precision
                if self.flip_tta:
                    with autocast(vol.device, self.amp):
                        heads = forward_network(network, mirrored_guides, mirrored_masks, q.flip(-1), i, forward)
                    probability = 0.5 * (probability + foreground_probability(heads, size).flip(-1))
                chunks.append(probability)
            probabilities = torch.cat(chunks)
        predicted_slices = sum(len(plan[1]) for plan in plans)
        result.slices_predicted += predicted_slices
        bar.update(predicted_slices)

        next_fronts = []
        with timer("paste_back"):
            for front, indices, window, guide_mask in plans:
                n = len(indices) + (self.residual_weight > 0)
                predicted, probabilities = probabilities[:n], probabilities[n:]
                if self.residual_weight > 0:
                    predicted = redraw_residual(predicted[1:], guide_mask, predicted[:1], self.residual_weight)
                part, rows, cols = paste_region(predicted, window, height, width)
                if touched is not None:
                    touched.add(rows, cols)
                if shift_px is not None:
                    # The guide lies inside its own window, so the constraint needs only the window's part.
                    part = continuous(part, front.mask[rows, cols], shift_px)
                if self.outline_weight > 0:
                    w = self.outline_weight
                    part = (1.0 - w) * part + w * outline_prior(front.mask[rows, cols], self.interpolation[1])[None]
                areas = (part > 0.5).flatten(1).sum(1)
                empty = torch.nonzero(areas == 0).flatten()
                # The object ends at the first empty prediction; anything beyond it is not this object.
                keep = int(empty[0]) + 1 if len(empty) else len(indices)
                # The kept slices are consecutive: one slice of the volume, in ascending order.
                first_kept, last_kept = sorted((int(indices[0]), int(indices[keep - 1])))
                block = part[:keep] if front.step > 0 else part[:keep].flip(0)
                if front.weighted:  # a side's vote counts 1 / (distance to its guide)
                    span = torch.arange(first_kept, last_kept + 1, device=block.device)
                    weight = 1.0 / (span - front.origin).abs().float()
                    prob_sum[front.obj, first_kept : last_kept + 1, rows, cols] += block * weight[:, None, None]
                    votes[front.obj, first_kept : last_kept + 1] += weight
                else:
                    prob_sum[front.obj, first_kept : last_kept + 1, rows, cols] += block
                    votes[front.obj, first_kept : last_kept + 1] += 1
                if len(empty) or int(areas[keep - 1]) < self.min_guide_area:
                    continue
                last = int(indices[keep - 1])
                mask = prob_sum[front.obj, last] / votes[front.obj, last] > 0.5
                next_fronts.append(_Front(front.obj, last, mask, front.step, front.limit, front.origin, front.weighted))
        return next_fronts

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
            offsets: slice offsets, each landing inside the volume; ``0`` asks for the guide slice itself (how well
                the network reproduces the drawn mask on its own image).
            axis: the propagation axis.

        Returns:
            ``(len(offsets), H, W)`` float32 probabilities on the full slice (0 outside the RoI).
        """
        volume = volume_3d(inputs)
        plane_axes(axis)
        if not all_finite(volume):
            raise ImageError("the image contains NaN or infinite intensities.")
        vol = volume.to(device=network_device(network), dtype=torch.float32).movedim(axis, 0)
        depth, height, width = vol.shape
        mask = torch.as_tensor(guide_mask)
        if tuple(mask.shape) != (height, width):
            raise PromptError(f"the guide mask's shape {tuple(mask.shape)} differs from the slice's {(height, width)}.")
        mask = mask.to(vol.device).bool()
        if not bool(mask.any()):
            raise PromptError("the guide mask is empty.")
        indices = torch.tensor([int(slice_index) + int(o) for o in offsets], dtype=torch.long)
        if not 0 <= int(slice_index) < depth or bool(((indices < 0) | (indices >= depth)).any()):
            raise PromptError(f"the guide slice and every slice_index + offset must lie in 0..{depth - 1}.")
        size = network_input_size(network)
        window = guided_window(vol[int(slice_index)], mask)
        guide, queries, guide_crop, roi = roi_crops(
            vol, int(slice_index), indices, mask, window, size, self.roi_scale, self.roi_min_size
        )
        with autocast(vol.device, self.amp):
            heads = forward_network(
                network,
                guide[:, None],
                guide_crop[:, None],
                queries[:, None],
                torch.zeros(len(indices), dtype=torch.long, device=vol.device),
            )
        part, rows, cols = paste_region(foreground_probability(heads, size), roi, height, width)
        out = torch.zeros((len(indices), height, width), dtype=torch.float32, device=vol.device)
        out[:, rows, cols] = part
        return out

    def _compiled_forward(self, network: Callable[..., Any]) -> Callable[..., Any] | None:
        """``torch.compile`` of the network's ``forward_indexed`` (kept for the next calls), or ``None``."""
        module = getattr(network, "module", network)
        if not self.compile or not hasattr(module, "forward_indexed"):
            return None
        if self._compiled is None or self._compiled[0] is not module:
            mode = "reduce-overhead" if network_device(network).type == "cuda" else None
            self._compiled = (module, torch.compile(module.forward_indexed, dynamic=True, mode=mode))
        return self._compiled[1]
