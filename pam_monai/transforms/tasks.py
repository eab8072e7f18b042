"""Training samples for PAM: PropMask propagation tasks and Box2Mask box samples (PAM paper).

Both samplers are MONAI randomizable dictionary transforms meant to run per iteration on volumes that were read
once and cached (``CacheDataset``): they read nothing from disk and copy only the handful of slices they use.
:class:`LabelSliceStatsd` is the deterministic companion that belongs in the cached part of the pipeline: it
stores, for every object label and every axis, how many pixels the object has on each slice, so that choosing an
object and a guiding slice costs no pass over the volume.

A propagation task (:class:`RandPropagationTaskd`)::

    axis a ~ axes, object l with a slice of >= min_guide_pixels along a, guiding slice g (such a slice),
    Nq query slices k with 0 < |k - g| <= thickness_mm / spacing[a] (the object may be absent there),
    square RoI around the guiding mask's bounding box scaled by U(crop_scale), resized to size x size,
    intensity window = 0.5 / 99.5 percentiles of the guiding slice under the guiding mask (full resolution),
    independent flips / rotation per slice, the same for a slice's image and its mask.

Outputs ``guide_image`` (1, S, S), ``guide_mask`` (1, S, S), ``query_images`` (Nq, 1, S, S) and ``query_masks``
(Nq, 1, S, S) as plain float tensors (images in [-1, 1], masks 0 / 1), plus a few integers describing the task.

A Box2Mask sample (:class:`RandBox2MaskSampled`) crops the tightest box of an object's mask on one slice, scaled by
U(box_scale) around its centre and clipped to the slice, resizes it to S x S (aspect ratio not kept, as at
inference), normalises it with the 0.5 / 99.5 percentiles of the object's pixels inside the box, and augments it
(flips, rotation, brightness / contrast). Outputs ``image`` (1, S, S) and ``label`` (1, S, S).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, Randomizable, Transform
from scipy import ndimage

from pam_monai.transforms.intensity import apply_window, guided_window
from pam_monai.transforms.roi import crop_resize, mask_bounding_box, square_roi

__all__ = [
    "LabelSliceStats",
    "LabelSliceStatsd",
    "RandBox2MaskSampled",
    "RandPropagationTaskd",
    "augment_slices",
    "compute_label_slice_stats",
]

DEFAULT_STATS_KEY = "label_stats"


class LabelSliceStats:
    """Per-slice pixel counts of every object of a label volume.

    Attributes:
        values: ``(L,)`` the nonzero label values present.
        counts: three arrays, ``counts[a]`` of shape ``(L, D_a)``: pixels of object ``values[i]`` on slice ``k``
            along axis ``a``.
    """

    def __init__(self, values: np.ndarray, counts: Sequence[np.ndarray]) -> None:
        self.values = np.asarray(values, dtype=np.int64)
        self.counts = tuple(np.asarray(c, dtype=np.int64) for c in counts)

    @property
    def voxels(self) -> np.ndarray:
        """``(L,)`` voxels of every object."""
        return self.counts[0].sum(axis=1) if len(self.values) else np.zeros(0, dtype=np.int64)

    def __repr__(self) -> str:
        return f"LabelSliceStats(values={self.values.tolist()}, shape={tuple(c.shape[1] for c in self.counts)})"


def _plain(x: Any) -> torch.Tensor:
    """A plain tensor view of ``x`` (MetaTensor, tensor or array); the channel axis is kept."""
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _integer_labels(label: np.ndarray) -> np.ndarray:
    if np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_:
        return label
    return np.rint(label).astype(np.int64)


def compute_label_slice_stats(label: torch.Tensor | np.ndarray) -> LabelSliceStats:
    """Count the pixels of every object on every slice along each of the three axes.

    Args:
        label: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` integer labels (0 = background; negative values are ignored).

    Costs one pass over the volume plus one pass over each object's bounding box.
    """
    lab = _plain(label).cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if lab.ndim == 4:
        lab = lab[0]
    if lab.ndim != 3:
        raise ValueError(f"expected a (X, Y, Z) or (1, X, Y, Z) label volume, got shape {tuple(lab.shape)}.")
    lab = _integer_labels(lab)
    positive = np.where(lab > 0, lab, 0)
    if positive.dtype == np.bool_:
        positive = positive.astype(np.uint8)
    values: list[int] = []
    counts: list[list[np.ndarray]] = [[], [], []]
    for value, box in enumerate(ndimage.find_objects(positive), start=1):
        if box is None:
            continue
        inside = positive[box] == value
        values.append(value)
        for axis in range(3):
            per_slice = np.zeros(lab.shape[axis], dtype=np.int64)
            per_slice[box[axis]] = inside.sum(axis=tuple(i for i in range(3) if i != axis))
            counts[axis].append(per_slice)
    arrays = [np.stack(c) if c else np.zeros((0, lab.shape[a]), dtype=np.int64) for a, c in enumerate(counts)]
    return LabelSliceStats(np.asarray(values, dtype=np.int64), arrays)


def _source_name(d: Mapping[Hashable, Any], image_key: str) -> str:
    """The file (or synthetic seed) a sample comes from, for error messages."""
    image = d.get(image_key)
    meta = getattr(image, "meta", None) or d.get(f"{image_key}_meta_dict") or {}
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if name:
        return str(name)
    if "seed" in d:
        return f"synthetic volume (seed {d['seed']})"
    return "<unnamed volume>"


def _spacing(spacing: Any, image: Any) -> np.ndarray:
    """``(3,)`` voxel spacing: the explicit ``spacing`` entry, else the MetaTensor affine, else ones."""
    if spacing is not None:
        values = _plain(spacing).detach().cpu().numpy() if isinstance(spacing, torch.Tensor) else np.asarray(spacing)
        return values.astype(np.float64).reshape(-1)[:3]
    if isinstance(image, MetaTensor):
        return np.asarray(affine_to_spacing(image.affine, r=3), dtype=np.float64)
    return np.ones(3, dtype=np.float64)


def _volume(x: Any, name: str, what: str) -> torch.Tensor:
    vol = _plain(x)
    if vol.ndim == 4:
        if vol.shape[0] != 1:
            raise ValueError(f"{name}: the {what} must have one channel, got shape {tuple(vol.shape)}.")
        vol = vol[0]
    if vol.ndim != 3:
        raise ValueError(f"{name}: the {what} must be (1, X, Y, Z) or (X, Y, Z), got shape {tuple(vol.shape)}.")
    return vol


def _stats(d: Mapping[Hashable, Any], label: torch.Tensor, stats_key: str) -> LabelSliceStats:
    stats = d.get(stats_key)
    return stats if isinstance(stats, LabelSliceStats) else compute_label_slice_stats(label)


def _slices(vol: torch.Tensor, axis: int, indices: Sequence[int]) -> torch.Tensor:
    """``(N, H, W)`` copies of the slices ``indices`` along ``axis`` (the two other axes keep their order)."""
    index = torch.as_tensor(list(indices), dtype=torch.long, device=vol.device)
    return vol.index_select(axis, index).movedim(axis, 0)


def augment_slices(
    images: torch.Tensor,
    masks: torch.Tensor,
    flips: np.ndarray,
    angles: np.ndarray,
    fill: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip and rotate every slice, its mask with it (bilinear for images, nearest for masks).

    Args:
        images: ``(N, S, S)`` normalised images.
        masks: ``(N, S, S)`` 0 / 1 masks.
        flips: ``(N, 2)`` bool, flip rows / columns.
        angles: ``(N,)`` rotation in radians (0: none).
        fill: image value of the pixels rotated in from outside (the window's low end, -1).
    """
    images, masks = images.clone(), masks.clone()
    for i in range(images.shape[0]):
        dims = [d for d, flip in zip((-2, -1), flips[i]) if flip]
        if dims:
            images[i] = images[i].flip(dims)
            masks[i] = masks[i].flip(dims)
    rotate = np.nonzero(np.asarray(angles) != 0)[0]
    if rotate.size:
        idx = torch.as_tensor(rotate, dtype=torch.long)
        angle = torch.as_tensor(np.asarray(angles)[rotate], dtype=torch.float32)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack((torch.stack((cos, -sin, zero), 1), torch.stack((sin, cos, zero), 1)), 1)
        size = (len(rotate), 1, *images.shape[-2:])
        grid = F.affine_grid(theta.to(images.device), list(size), align_corners=False)
        # Shift so that the padding value (0) of grid_sample becomes `fill`.
        rotated = F.grid_sample(images[idx, None] - fill, grid, mode="bilinear", align_corners=False) + fill
        images[idx] = rotated[:, 0]
        masks[idx] = F.grid_sample(masks[idx, None].float(), grid, mode="nearest", align_corners=False)[:, 0]
    return images, masks


class LabelSliceStatsd(MapTransform):
    """Deterministic companion of the task samplers: compact the label dtype and store its slice statistics.

    Put it at the end of the cached (deterministic) part of the pipeline. The label becomes the smallest integer
    type holding its values (uint8 / int16 / int32; a MetaTensor keeps its metadata) and ``stats_key`` receives a
    :class:`LabelSliceStats`.

    Args:
        label_key: the label volume ``(1, X, Y, Z)``.
        stats_key: where to store the statistics.
        compact: convert the label to the smallest integer dtype.
    """

    def __init__(self, label_key: str = "label", stats_key: str = DEFAULT_STATS_KEY, compact: bool = True) -> None:
        super().__init__(keys=[label_key])
        self.label_key = label_key
        self.stats_key = stats_key
        self.compact = compact

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        if self.compact:
            plain = _plain(label)
            if plain.is_floating_point():
                plain = plain.round()
            top = int(plain.max()) if plain.numel() else 0
            low = int(plain.min()) if plain.numel() else 0
            dtype = (
                torch.uint8
                if low >= 0 and top <= 255
                else torch.int16
                if -32768 <= low and top <= 32767
                else torch.int32
            )
            if isinstance(label, MetaTensor):
                label = MetaTensor(plain.to(dtype), meta=label.meta, applied_operations=label.applied_operations)
            else:
                label = plain.to(dtype)
            d[self.label_key] = label
        d[self.stats_key] = compute_label_slice_stats(label)
        return d


class _TaskSampler(Randomizable, Transform):
    """Shared parts of the two samplers: object / slice choice and the augmentation draws."""

    def __init__(
        self,
        image_key: str,
        label_key: str,
        stats_key: str,
        min_pixels: int,
        size: int,
        flip_prob: float,
        rotate_prob: float,
        max_rotation_deg: float,
        axes: Sequence[int],
    ) -> None:
        axes = tuple(int(a) for a in axes)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}.")
        self.image_key, self.label_key, self.stats_key = image_key, label_key, stats_key
        self.min_pixels = int(min_pixels)
        self.size = int(size)
        self.flip_prob, self.rotate_prob = float(flip_prob), float(rotate_prob)
        self.max_rotation = math.radians(float(max_rotation_deg))
        self.axes = axes

    def randomize(self, data: Any = None) -> None:  # the draws happen in the helpers below, all from self.R
        pass

    def _choose_object_slice(self, stats: LabelSliceStats, shape: Sequence[int], name: str) -> tuple[int, int, int]:
        """``(axis, object index, slice)``: a random object and a slice where it has >= min_pixels.

        The axis is drawn from ``axes`` (only axes with more than one slice); when no object reaches the threshold
        on that axis, another axis that has one is used; when none has, the largest slice of the largest object.
        """
        if len(stats.values) == 0:
            raise ValueError(f"{name}: the label is empty (no object to sample a training task from).")
        usable = [a for a in self.axes if shape[a] > 1] or list(self.axes)
        axis = usable[self.R.randint(len(usable))]
        eligible = [a for a in usable if (stats.counts[a] >= self.min_pixels).any()]
        if eligible:
            if axis not in eligible:
                axis = eligible[self.R.randint(len(eligible))]
            good = stats.counts[axis] >= self.min_pixels
            objects = np.nonzero(good.any(axis=1))[0]
            obj = int(objects[self.R.randint(len(objects))])
            slices = np.nonzero(good[obj])[0]
            return axis, obj, int(slices[self.R.randint(len(slices))])
        obj = int(np.argmax(stats.voxels))
        return axis, obj, int(np.argmax(stats.counts[axis][obj]))

    def _draw_augmentation(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        flips = self.R.uniform(size=(n, 2)) < self.flip_prob
        rotate = self.R.uniform(size=n) < self.rotate_prob
        angles = self.R.uniform(-self.max_rotation, self.max_rotation, size=n)
        return flips, np.where(rotate, angles, 0.0)


class RandPropagationTaskd(_TaskSampler):
    """Sample one PropMask training task (guiding slice + mask, query slices + target masks) from a volume.

    Args:
        image_key: the image volume ``(1, X, Y, Z)`` (a MetaTensor's affine gives the spacing).
        label_key: the label volume ``(1, X, Y, Z)``, any number of object values.
        num_queries: query slices per task (Nq).
        thickness_mm: query slices lie within ``thickness_mm / spacing`` slices of the guiding slice (at least 1).
        min_guide_pixels: the guiding mask has at least this many pixels (see the fallback above).
        crop_scale: the RoI side is U(crop_scale) times the guiding mask's bounding box side.
        size: output side S.
        flip_prob: probability of flipping each slice's rows, and independently its columns.
        rotate_prob: probability of rotating each slice.
        max_rotation_deg: rotation angle ~ U(-max, max).
        axes: axes the propagation may run along.
        stats_key: where :class:`LabelSliceStatsd` stored the statistics (computed on the fly when absent).
        spacing_key: optional ``(3,)`` spacing entry, used before the image affine.

    Raises:
        ValueError: naming the file, when the label holds no object.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        num_queries: int = 4,
        thickness_mm: float = 20.0,
        min_guide_pixels: int = 100,
        crop_scale: Sequence[float] = (1.0, 2.0),
        size: int = 224,
        flip_prob: float = 0.5,
        rotate_prob: float = 0.5,
        max_rotation_deg: float = 45.0,
        axes: Sequence[int] = (0, 1, 2),
        stats_key: str = DEFAULT_STATS_KEY,
        spacing_key: str = "spacing",
    ) -> None:
        super().__init__(
            image_key, label_key, stats_key, min_guide_pixels, size, flip_prob, rotate_prob, max_rotation_deg, axes
        )
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
        self.num_queries = int(num_queries)
        self.thickness_mm = float(thickness_mm)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[-1]))
        self.spacing_key = spacing_key

    def _query_slices(self, guide: int, depth: int, spacing: float) -> np.ndarray:
        reach = max(int(self.thickness_mm / spacing) if spacing > 0 else 1, 1)
        candidates = [k for k in range(max(guide - reach, 0), min(guide + reach, depth - 1) + 1) if k != guide]
        if not candidates:  # a single-slice axis: the only "neighbour" is the guiding slice itself
            candidates = [guide]
        replace = len(candidates) < self.num_queries
        return np.sort(self.R.choice(np.asarray(candidates), size=self.num_queries, replace=replace))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        d = dict(data)
        name = _source_name(d, self.image_key)
        image = _volume(d[self.image_key], name, "image")
        label = _volume(d[self.label_key], name, "label")
        if image.shape != label.shape:
            raise ValueError(f"{name}: label grid {tuple(label.shape)} differs from image grid {tuple(image.shape)}.")
        stats = _stats(d, label, self.stats_key)
        spacing = _spacing(d.get(self.spacing_key), d[self.image_key])

        axis, obj, guide = self._choose_object_slice(stats, image.shape, name)
        value = int(stats.values[obj])
        queries = self._query_slices(guide, image.shape[axis], float(spacing[axis]))
        scale = float(self.R.uniform(*self.crop_scale))
        flips, angles = self._draw_augmentation(1 + self.num_queries)

        indices = [guide, *queries.tolist()]
        images = _slices(image, axis, indices).float()
        masks = _slices(label, axis, indices) == value
        guide_mask = masks[0]
        window = square_roi(guide_mask, scale)
        lo, hi = guided_window(images[0], guide_mask)
        crops = apply_window(crop_resize(images, window, self.size, pad_value=lo), lo, hi)
        mask_crops = (crop_resize(masks.float(), window, self.size, mode="nearest-exact") > 0.5).float()
        crops, mask_crops = augment_slices(crops, mask_crops, flips, angles)
        return {
            "guide_image": crops[:1].contiguous(),
            "guide_mask": mask_crops[:1].contiguous(),
            "query_images": crops[1:, None].contiguous(),
            "query_masks": mask_crops[1:, None].contiguous(),
            "axis": axis,
            "object_label": value,
            "guide_slice": guide,
            "guide_pixels": int(stats.counts[axis][obj, guide]),
            "query_slices": torch.as_tensor(queries, dtype=torch.long),
        }


class RandBox2MaskSampled(_TaskSampler):
    """Sample one Box2Mask training pair (normalised box crop, object mask) from a volume.

    Args:
        image_key: the image volume ``(1, X, Y, Z)``.
        label_key: the label volume ``(1, X, Y, Z)``.
        min_pixels: the object has at least this many pixels on the slice (same fallback as the task sampler).
        box_scale: the tightest box is scaled by U(box_scale) around its centre, then clipped to the slice.
        size: output side S (the box is resized to S x S, its aspect ratio not kept, as at inference).
        flip_prob: probability of flipping the rows, and independently the columns.
        rotate_prob: probability of a rotation.
        max_rotation_deg: rotation angle ~ U(-max, max).
        brightness: additive shift U(-brightness, brightness) of the normalised image.
        contrast: multiplicative factor U(1 - contrast, 1 + contrast) of the normalised image.
        axes: slice orientations to sample from.
        stats_key: see :class:`RandPropagationTaskd`.
        output_image_key: key of the ``(1, S, S)`` image in the output.
        output_label_key: key of the ``(1, S, S)`` mask in the output.

    Raises:
        ValueError: naming the file, when the label holds no object.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        min_pixels: int = 100,
        box_scale: Sequence[float] = (1.0, 1.25),
        size: int = 224,
        flip_prob: float = 0.5,
        rotate_prob: float = 0.5,
        max_rotation_deg: float = 45.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        axes: Sequence[int] = (0, 1, 2),
        stats_key: str = DEFAULT_STATS_KEY,
        output_image_key: str = "image",
        output_label_key: str = "label",
    ) -> None:
        super().__init__(
            image_key, label_key, stats_key, min_pixels, size, flip_prob, rotate_prob, max_rotation_deg, axes
        )
        self.box_scale = (float(box_scale[0]), float(box_scale[-1]))
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.output_image_key, self.output_label_key = output_image_key, output_label_key

    @staticmethod
    def scaled_box(box: tuple[int, int, int, int], scale: float, height: int, width: int) -> tuple[int, int, int, int]:
        """Inclusive box ``box`` scaled by ``scale`` around its centre and clipped to the slice."""
        r0, c0, r1, c1 = box
        half_h, half_w = scale * (r1 - r0 + 1) / 2.0, scale * (c1 - c0 + 1) / 2.0
        cr, cc = (r0 + r1 + 1) / 2.0, (c0 + c1 + 1) / 2.0
        top, left = max(int(math.floor(cr - half_h)), 0), max(int(math.floor(cc - half_w)), 0)
        bottom, right = min(int(math.ceil(cr + half_h)), height) - 1, min(int(math.ceil(cc + half_w)), width) - 1
        return top, left, max(bottom, top), max(right, left)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        d = dict(data)
        name = _source_name(d, self.image_key)
        image = _volume(d[self.image_key], name, "image")
        label = _volume(d[self.label_key], name, "label")
        if image.shape != label.shape:
            raise ValueError(f"{name}: label grid {tuple(label.shape)} differs from image grid {tuple(image.shape)}.")
        stats = _stats(d, label, self.stats_key)

        axis, obj, index = self._choose_object_slice(stats, image.shape, name)
        value = int(stats.values[obj])
        scale = float(self.R.uniform(*self.box_scale))
        flips, angles = self._draw_augmentation(1)
        contrast = float(self.R.uniform(1.0 - self.contrast, 1.0 + self.contrast))
        brightness = float(self.R.uniform(-self.brightness, self.brightness))

        plane = image.select(axis, index).float()
        mask = label.select(axis, index) == value
        r0, c0, r1, c1 = self.scaled_box(mask_bounding_box(mask), scale, *plane.shape)
        crop, crop_mask = plane[r0 : r1 + 1, c0 : c1 + 1], mask[r0 : r1 + 1, c0 : c1 + 1]
        lo, hi = guided_window(crop, crop_mask)
        antialias = max(crop.shape) > self.size
        resized = F.interpolate(crop[None, None], size=(self.size, self.size), mode="bilinear", antialias=antialias)
        resized_mask = F.interpolate(crop_mask[None, None].float(), size=(self.size, self.size), mode="nearest-exact")
        img = apply_window(resized[0], lo, hi)
        img, lab = augment_slices(img, (resized_mask[0] > 0.5).float(), flips, angles)
        img = (img * contrast + brightness).clamp(-1.0, 1.0)
        return {
            self.output_image_key: img.contiguous(),
            self.output_label_key: lab.contiguous(),
            "axis": axis,
            "object_label": value,
            "slice": index,
            "box": torch.as_tensor([r0, c0, r1, c1], dtype=torch.long),
        }
