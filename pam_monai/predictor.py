"""A stateful predictor: load the networks once, set one image, segment many prompts on it, and correct results.

Each object (label value) segmented on the current image has a session: its guides (the slices that steer it) and
the steps that changed it. :meth:`PAMPredictor.refine` adds corrected slices as guides and recomputes only the
slices they can change (see :mod:`pam_monai.inferers.refinement`); :meth:`PAMPredictor.undo` takes a step back.

The predictor itself imports no MONAI: it works on the image as a plain tensor with its affine beside it
(:meth:`PAMPredictor.set_volume`, what the command line uses), and gives it as a MetaTensor to those who ask
(:attr:`PAMPredictor.image`, :meth:`PAMPredictor.set_image`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pam_monai.data.io import ImageError, affine_spacing, is_meta_tensor, load_image
from pam_monai.errors import PromptError, SessionError
from pam_monai.inferers.propagation_parts import PropagationResult, result_report
from pam_monai.inferers.propagator import Propagator
from pam_monai.networks.checkpoint import CheckpointError, build_network_from_checkpoint
from pam_monai.networks.weights import DEFAULT_BOX2MASK, DEFAULT_PROPMASK, default_checkpoints
from pam_monai.prompts.core import mask_prompts_from_volume, plane_axes, validate_box
from pam_monai.prompts.slicer_roi import read_slicer_roi, roi_prompt

if TYPE_CHECKING:
    from monai.data import MetaTensor

__all__ = ["DEFAULT_BOX2MASK", "DEFAULT_PROPMASK", "ObjectSession", "PAMPredictor", "default_checkpoints"]


@dataclass
class ObjectSession:
    """One object's interactive state on the current image: its ``guides`` (slice -> ``(H, W)`` bool mask along
    ``axis``) and ``history``, per step the guides before it and the slices it changed with their old content."""

    label: int
    axis: int
    guides: dict[int, torch.Tensor]
    history: list[tuple[dict[int, torch.Tensor], int, int, torch.Tensor]] = field(default_factory=list)


class PAMPredictor:
    """Segment objects in one 3D image from 2D prompts, keeping the networks and the image loaded.

    Args:
        propmask: the PropMask network.
        box2mask: the Box2Mask network (needed for box prompts).
        inferer: the propagation (a :class:`~pam_monai.inferers.propagator.Propagator` or a
            :class:`~pam_monai.inferers.propagation.PropagationInferer`; default settings if omitted).
        device: where the networks run.

    Example::

        predictor = PAMPredictor.from_checkpoints()
        predictor.set_image("ct.nii.gz")
        result = predictor.segment(box=(100, 120, 160, 190), slice_index=42)
        result = predictor.refine(result, clicks=[(130, 150, 50, +1)])  # a foreground click on slice 50
        result = predictor.undo()  # back to the first result

    ``segment`` opens (or replaces) the session of each object it returns; ``refine`` corrects one and
    ``undo`` goes back a step (at most ``max_undo`` steps are kept).
    """

    def __init__(
        self,
        *,
        propmask: nn.Module,
        box2mask: nn.Module | None = None,
        inferer: Propagator | None = None,
        device: str | torch.device = "cpu",
        max_undo: int = 20,
    ) -> None:
        self.device = torch.device(device)
        self.max_undo = int(max_undo)
        self.sessions: dict[int, ObjectSession] = {}
        self._steps: list[list[int]] = []  # per undoable step (a refine call), the labels it changed, oldest first
        self._current: torch.Tensor | None = None
        self.propmask = propmask.to(self.device).eval()
        self.box2mask = box2mask.to(self.device).eval() if box2mask is not None else None
        self.inferer = inferer or Propagator()
        self.volume: torch.Tensor | None = None  # the current (X, Y, Z) image as a plain tensor
        self.affine: np.ndarray | None = None  # and its 4x4 float64 affine (mm)
        self._image: MetaTensor | None = None  # the MetaTensor given to set_image, or made for the image property

    @classmethod
    def from_checkpoints(
        cls,
        propmask: str | os.PathLike | None = None,
        box2mask: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        **inferer_args: Any,
    ) -> PAMPredictor:
        """Build from checkpoint files (ours or the authors'); without paths, the bundle's default weights; the
        ``inferer_args`` configure a :class:`~pam_monai.inferers.propagator.Propagator`."""
        if propmask is None:
            propmask, default_box2mask = default_checkpoints()
            box2mask = box2mask or (default_box2mask if default_box2mask.exists() else None)
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA GPU is available.")
        return cls(
            propmask=build_network_from_checkpoint(propmask, kind="propmask"),
            box2mask=build_network_from_checkpoint(box2mask, kind="box2mask") if box2mask else None,
            inferer=Propagator(**inferer_args),
            device=device,
        )

    def set_volume(self, volume: torch.Tensor | np.ndarray, affine: np.ndarray | torch.Tensor | None = None) -> None:
        """Take a ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) image with its 4x4 affine in mm (default: 1 mm voxels),
        without MONAI (see :func:`~pam_monai.data.io.load_volume` to read one from a file).

        Raises:
            ImageError: when the image is not 3D or holds NaN or infinite intensities.
        """
        volume = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
        if volume.ndim == 4 and volume.shape[0] == 1:
            volume = volume[0]
        if volume.ndim != 3:
            raise ImageError(f"the image must be 3D, got shape {tuple(volume.shape)}.")
        if not bool(torch.isfinite(volume).all()):
            raise ImageError("the image contains NaN or infinite intensities.")
        self.volume = volume
        self.affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        self._image = None
        self.sessions, self._steps, self._current = {}, [], None

    def set_image(
        self, image: str | os.PathLike | MetaTensor | np.ndarray | torch.Tensor, spacing: Sequence[float] | None = None
    ) -> MetaTensor:
        """Load (from a path) or take a ``(X, Y, Z)`` image; an array gets ``spacing`` (default 1 mm) as affine.

        Returns:
            the image as a MetaTensor (the one given, or one read with MONAI's readers).
        """
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        if not is_meta_tensor(image):
            self.set_volume(image, np.diag([*(spacing or (1.0, 1.0, 1.0)), 1.0]))  # type: ignore[arg-type]
            return self.image  # type: ignore[return-value]
        self.set_volume(image.as_tensor(), image.affine)
        self._image = image if image.ndim == 3 else image[0]
        return self._image

    @property
    def image(self) -> MetaTensor | None:
        """The current image as a MetaTensor (with its affine): the one given to :meth:`set_image`, else made on
        first use (which imports MONAI); ``None`` before an image is set."""
        if self._image is None and self.volume is not None:
            from monai.data import MetaTensor

            self._image = MetaTensor(self.volume, affine=torch.from_numpy(self.affine))
        return self._image

    @property
    def spacing(self) -> tuple[float, float, float]:
        if self.affine is None:
            raise RuntimeError("call set_image() first.")
        return affine_spacing(self.affine)

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
        boxes: Sequence[tuple[Sequence[int], int]] | None = None,
    ) -> PropagationResult:
        """Segment the prompted object(s) in the current image (see :meth:`Propagator.propagate`: masks on
        any slices, boxes on several slices, or a 3D box) and open a session for each object found."""
        if self.volume is None:
            raise RuntimeError("call set_image() before segment().")
        plane_axes(axis)
        if (box is not None or box3d is not None or boxes) and self.box2mask is None:
            raise CheckpointError("box prompts need Box2Mask weights; none were loaded.")
        result = self.inferer.propagate(
            self.volume,
            self.propmask,
            self.box2mask,
            mask_prompt=mask_prompt,
            box=box,
            slice_index=slice_index,
            boxes=boxes,
            box3d=box3d,
            axis=axis,
            spacing=self.spacing,
            label=label,
            thickness_mm=thickness_mm,
        )
        self._open(result.labels, axis, result.guides)
        return result

    def roi_prompt(self, roi: str | os.PathLike) -> dict[str, Any]:
        """A 3D Slicer ROI markup (``.mrk.json``) as keywords for :meth:`segment` on the current image's grid:
        ``box3d``, or ``box``, ``slice_index`` and ``axis`` for an ROI one slice thin (see
        :func:`~pam_monai.prompts.slicer_roi.roi_prompt`)."""
        if self.volume is None or self.affine is None:
            raise RuntimeError("call set_image() before roi_prompt().")
        return roi_prompt(read_slicer_roi(roi), self.affine, tuple(self.volume.shape))

    def _open(self, labels: torch.Tensor, axis: int, guides: Mapping[int, Mapping[int, torch.Tensor]]) -> None:
        """Open (or replace) the session of every object in ``guides``; ``labels`` becomes the current result."""
        for lab, own in guides.items():
            self.sessions[int(lab)] = ObjectSession(int(lab), axis, {int(k): m.cpu().bool() for k, m in own.items()})
        self._steps = [kept for step in self._steps if (kept := [lab for lab in step if lab not in guides])]
        self._current = labels

    def open_session(
        self,
        previous: torch.Tensor | np.ndarray,
        axis: int = 2,
        guides: Mapping[int, Sequence[int]] | None = None,
    ) -> PropagationResult:
        """Start correcting a result made earlier (e.g. a saved label image) on the current image.

        Args:
            previous: ``(X, Y, Z)`` label volume on the image's grid.
            axis: the axis its objects were propagated along.
            guides: per label, the slices that guided it (e.g. a report's ``prompt_slices``); a label without a
                record gets its largest slice (where a user prompts first). The guides keep the result's masks.

        Returns:
            the previous result as a :class:`PropagationResult`, to pass to :meth:`refine`.
        """
        image = self._need_image("open_session")
        plane_axes(axis)
        labels = torch.as_tensor(np.asarray(previous) if not isinstance(previous, torch.Tensor) else previous)
        labels = labels.reshape(labels.shape[-3:]) if labels.ndim == 4 and labels.shape[0] == 1 else labels
        if tuple(labels.shape) != tuple(image.shape):
            raise PromptError(
                f"the previous result's grid {tuple(labels.shape)} differs from the image's {tuple(image.shape)}."
            )
        from pam_monai.inferers.refinement import implied_guides  # with its import of the MONAI inferer

        labels = labels.round().to(torch.int16)
        moved = labels.movedim(axis, 0)
        found: dict[int, dict[int, torch.Tensor]] = {}
        for lab in (int(v) for v in torch.unique(labels).tolist() if v > 0):
            recorded = [int(k) for k in (guides or {}).get(lab, ()) if 0 <= int(k) < moved.shape[0]]
            own = {k: moved[k] == lab for k in recorded if bool((moved[k] == lab).any())}
            found[lab] = own or implied_guides(labels, lab, axis)
        self._open(labels, axis, found)
        return self._result(labels, axis)

    def _need_image(self, what: str) -> torch.Tensor:
        if self.volume is None:
            raise RuntimeError(f"call set_image() before {what}().")
        return self.volume

    def _result(self, labels: torch.Tensor, axis: int, predicted: int = 0) -> PropagationResult:
        # a session without guides only while its object is in the result (no scan of the whole volume otherwise)
        guides = {
            lab: dict(s.guides) for lab, s in sorted(self.sessions.items()) if s.guides or bool((labels == lab).any())
        }
        result = PropagationResult(labels=labels, slices_predicted=predicted, axis=axis, guides=guides)
        result.prompt_slices = {lab: sorted(own) for lab, own in guides.items()}
        return result

    def corrections(
        self,
        labels: torch.Tensor,
        axis: int,
        *,
        mask_slices: torch.Tensor | np.ndarray | None = None,
        clicks: Sequence[Sequence[int]] | None = None,
        box: Sequence[int] | None = None,
        slice_index: int | None = None,
        boxes: Sequence[tuple[Sequence[int], int]] | None = None,
        label: int | None = None,
    ) -> dict[int, dict[int, torch.Tensor]]:
        """Per label, the corrected slices' masks: drawn (``mask_slices``, a label volume nonzero on the corrected
        slices), Box2Mask's answer to each box, or the current slice mask (from ``labels``) edited by the clicks
        ``(i, j, k, +1 | -1)`` with :func:`~pam_monai.prompts.clicks.correct_plane`. Boxes and clicks are for
        ``label`` (default: the only object with a session, else 1)."""
        image = self._need_image("refine")
        shape = tuple(image.shape)
        rows, cols = plane_axes(axis)
        if label is None:
            label = next(iter(self.sessions)) if len(self.sessions) == 1 else 1
        found: dict[int, dict[int, torch.Tensor]] = {}
        if mask_slices is not None:
            drawn = torch.as_tensor(
                np.asarray(mask_slices) if not isinstance(mask_slices, torch.Tensor) else mask_slices
            )
            drawn = drawn.reshape(drawn.shape[-3:]) if drawn.ndim == 4 and drawn.shape[0] == 1 else drawn
            if tuple(drawn.shape) != shape:
                raise PromptError(f"the correction's grid {tuple(drawn.shape)} differs from the image's {shape}.")
            marked = (drawn != 0).any(dim=tuple(a for a in range(3) if a != axis)).nonzero().flatten()
            if not len(marked):
                raise PromptError("the correction is empty: no nonzero voxel in the corrected slices.")
            # only the marked slices are read (a correction marks a few slices of a large volume)
            for p in mask_prompts_from_volume(drawn.index_select(axis, marked), axis):
                found.setdefault(p.label, {})[int(marked[p.slice_index])] = p.mask
        box_list = [(tuple(int(v) for v in b), int(k)) for b, k in boxes or ()]
        if box is not None:
            if slice_index is None:
                raise PromptError("a box correction needs the index of its slice (slice_index).")
            box_list.append((tuple(int(v) for v in box), int(slice_index)))
        if box_list and self.box2mask is None:
            raise CheckpointError("box prompts need Box2Mask weights; none were loaded.")
        volume = image.to(torch.float32)
        for b, k in box_list:
            validate_box(b, k, shape, axis)  # type: ignore[arg-type]
            plane = volume.movedim(axis, 0)[k].to(self.device)
            mask = self.inferer.box2mask_inferer(plane, self.box2mask, box=b)
            found.setdefault(label, {})[k] = mask.cpu().bool()
        if clicks is not None:
            from pam_monai.prompts.clicks import correct_plane  # scikit-image: only when there are clicks

            clicks = [tuple(int(v) for v in c) for c in clicks]
            if not clicks:
                raise PromptError("the correction is empty: no click given.")
            by_slice: dict[int, list[tuple[int, ...]]] = {}
            for click in clicks:
                if len(click) != 4 or click[3] not in (1, -1):
                    raise PromptError(f"a click is (i, j, k, +1 or -1), got {click}.")
                if not all(0 <= v < n for v, n in zip(click[:3], shape)):
                    raise PromptError(f"click {click[:3]} lies outside the image of shape {shape}.")
                by_slice.setdefault(click[axis], []).append(click)
            for k, own in sorted(by_slice.items()):
                current = found.get(label, {}).get(k)
                if current is None:
                    current = labels.movedim(axis, 0)[k] == label
                plane = volume.movedim(axis, 0)[k].numpy()
                positive = [(c[rows], c[cols]) for c in own if c[3] > 0]
                negative = [(c[rows], c[cols]) for c in own if c[3] < 0]
                edited = correct_plane(current.numpy(), plane, positive, negative)
                found.setdefault(label, {})[k] = torch.from_numpy(np.asarray(edited, dtype=bool))
        if not found:
            raise PromptError("the correction is empty: give mask_slices, a box or clicks.")
        return found

    def refine(
        self,
        result: PropagationResult,
        *,
        mask_slices: torch.Tensor | np.ndarray | None = None,
        clicks: Sequence[Sequence[int]] | None = None,
        box: Sequence[int] | None = None,
        slice_index: int | None = None,
        boxes: Sequence[tuple[Sequence[int], int]] | None = None,
        label: int | None = None,
    ) -> PropagationResult:
        """Correct ``result`` (from :meth:`segment`, :meth:`open_session` or an earlier :meth:`refine`).

        Each corrected slice becomes a guide of its object and keeps its mask; only the slices between its
        neighbouring guides (to the volume's end beyond an outermost one) are recomputed, the rest of ``result``
        is kept voxel for voxel (see :func:`~pam_monai.inferers.refinement.refine_object`). See
        :meth:`corrections` for the kinds of correction; they may be combined.

        Raises:
            PromptError: an empty correction, a slice or click outside the image, a correction on another grid.
            SessionError: a correction for a label that ``result`` does not have.
        """
        image = self._need_image("refine")
        axis = result.axis
        if tuple(result.labels.shape) != tuple(image.shape):
            raise SessionError(
                f"the result's grid {tuple(result.labels.shape)} is not the current image's "
                f"{tuple(image.shape)}: segment it on this image first."
            )
        found = self.corrections(
            result.labels,
            axis,
            mask_slices=mask_slices,
            clicks=clicks,
            box=box,
            slice_index=slice_index,
            boxes=boxes,
            label=label,
        )
        missing = sorted(lab for lab in found if lab not in self.sessions and not bool((result.labels == lab).any()))
        if missing:
            present = {int(v) for v in torch.unique(result.labels).tolist() if v > 0} | set(self.sessions)
            raise SessionError(
                f"the correction is for label {missing[0]}, which the result does not have "
                f"(labels {sorted(present)}); segment that object first."
            )
        from pam_monai.inferers.refinement import implied_guides, refine_object

        started = time.perf_counter()
        labels, predicted, step = result.labels, 0, []
        for lab, masks in sorted(found.items()):
            session = self.sessions.get(lab)
            if session is None or session.axis != axis:
                session = ObjectSession(lab, axis, implied_guides(labels, lab, axis))
                self.sessions[lab] = session
            before = labels
            labels, guides, ranges, count = refine_object(
                self.inferer,
                image,
                self.propmask,
                labels,
                lab,
                session.guides,
                masks,
                axis=axis,
                spacing=self.spacing,
            )
            predicted += count
            lo, hi = ranges[0][0], ranges[-1][1]
            session.history.append((session.guides, lo, hi, before.movedim(axis, 0)[lo : hi + 1].clone()))
            session.guides = guides
            step.append(lab)
        self._steps.append(step)
        if len(self._steps) > self.max_undo:
            for oldest in self._steps.pop(0):
                self.sessions[oldest].history.pop(0)
        self._current = labels
        refined = self._result(labels, axis, predicted)
        refined.seconds["refine"] = time.perf_counter() - started
        return refined

    def undo(self, label: int | None = None) -> PropagationResult:
        """Go back one step (the latest :meth:`refine`, or only ``label``'s latest correction) and return the
        result as it was.

        Raises:
            SessionError: when there is nothing to undo.
        """
        steps = [i for i, step in enumerate(self._steps) if label is None or label in step]
        if not steps or self._current is None:
            which = "" if label is None else f" for label {label}"
            raise SessionError(f"nothing to undo{which}: no correction since the last segmentation.")
        step = self._steps[steps[-1]]
        undone = list(step) if label is None else [label]
        labels = self._current.clone()
        axis = self.sessions[undone[-1]].axis
        for lab in reversed(undone):  # the reverse of the order refine applied them
            session = self.sessions[lab]
            guides, lo, hi, old = session.history.pop()
            slab = labels.movedim(session.axis, 0)[lo : hi + 1]
            slab[slab == lab] = 0
            slab[(old == lab) & (slab == 0)] = lab
            session.guides = guides
            step.remove(lab)
        if not step:
            self._steps.pop(steps[-1])
        self._current = labels
        return self._result(labels, axis)

    def prompt(self, args: Mapping[str, Any], guides: Mapping[int, Sequence[int]] | None = None) -> PropagationResult:
        """Run a prompt as :func:`~pam_monai.prompts.parse.parse_prompt` and
        :func:`~pam_monai.prompts.parse.load_prompt_files` return it (what the CLI, the bundle, MONAI Label and
        Deploy receive): a new segmentation, or a refinement when it has ``previous`` (whose objects' ``guides``
        are given or implied, see :meth:`open_session`), or only clicks (of this predictor's current result)."""
        axis = int(args.get("axis", 2))
        fresh = any(args.get(k) is not None for k in ("mask_prompt", "box", "boxes", "box3d"))
        if args.get("previous") is not None:
            base = self.open_session(args["previous"], axis, guides)
        elif args.get("clicks") and not fresh:
            if self._current is None:
                raise SessionError("clicks correct a result: segment the object first, or give the previous result.")
            label = args.get("label")
            session = self.sessions.get(label if label is not None else next(iter(self.sessions), -1))
            base = self._result(self._current, session.axis if session is not None else axis)
        else:
            if args.get("clicks"):
                raise PromptError("clicks correct a result: give them with previous, or on their own after segment.")
            return self.segment(
                mask_prompt=args.get("mask_prompt"),
                box=args.get("box"),
                slice_index=args.get("slice_index"),
                boxes=args.get("boxes"),
                box3d=args.get("box3d"),
                axis=axis,
                label=int(args.get("label", 1)),
            )
        return self.refine(
            base,
            mask_slices=args.get("mask_prompt"),
            clicks=args.get("clicks"),
            box=args.get("box"),
            slice_index=args.get("slice_index"),
            boxes=args.get("boxes"),
            label=args.get("label"),
        )

    def report(self, result: PropagationResult, axis: int | None = None) -> dict[str, Any]:
        """Per-object voxels, volume in ml and slices covered (along ``axis``, default the result's own), plus
        rounds and seconds per stage (see :func:`~pam_monai.inferers.propagation_parts.result_report`)."""
        assert self.affine is not None
        return result_report(result, self.affine, axis)
