"""PropMask training tasks across images, and their mixing with the slice-to-slice tasks.

:class:`RandCrossImageTaskd` makes a task whose guide and queries are *different scenes* of one object
(:func:`pam_monai.data.synthetic.pairs.generate_scene_pair`: moved, scaled, rotated, elastically deformed, on other
backgrounds, noise and intensity scales)::

    guide crop   = the whole guide scene (probability whole_guide_prob), else the square RoI around the guide mask
                   scaled by U(crop_scale), as the slice-to-slice tasks crop it;
    query crop   = per query, the whole query scene (probability whole_query_prob), else a square window of side
                   max(U(query_window) x scene side, the query object's box side) placed uniformly among the
                   positions that keep the object inside it -- never derived from the guide's box, so the object
                   is anywhere in the crop, at any size;
    intensities  = the 0.5 / 99.5 percentiles of the guide scene under the guide mask (full resolution), applied to
                   the guide and to every query (whose own gain / offset then shows, as at inference).

The output has the keys, shapes and dtypes of :class:`~pam_monai.transforms.tasks.RandPropagationTaskd`, so both
kinds collate into one batch: ``guide_image`` / ``guide_mask`` ``(1, S, S)``, ``query_images`` / ``query_masks``
``(Nq, 1, S, S)`` float32, and the integers ``axis = -1`` (no volume axis), ``object_label`` (shape family index + 1),
``guide_slice = -1``, ``guide_pixels`` and ``query_slices`` ``(Nq,)`` of -1.

:class:`RandMixedTaskd` draws a cross-image task with probability ``cross_share`` and a slice-to-slice task
otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable, Transform
from monai.utils import MAX_SEED

from pam_monai.data.synthetic.pairs import PAIR_FAMILIES, generate_scene_pair
from pam_monai.transforms.intensity import apply_window, guided_window
from pam_monai.transforms.roi import RoIWindow, crop_resize, mask_bounding_box, square_roi

__all__ = ["RandCrossImageTaskd", "RandMixedTaskd", "containing_window"]


def containing_window(mask: torch.Tensor, side: int, rng: np.random.RandomState) -> RoIWindow:
    """A square window of ``side`` pixels inside the ``(H, W)`` image, placed uniformly among those holding the mask.

    ``side`` is raised to the mask's bounding-box side and lowered to the image's smaller side (a window that
    cannot hold the whole mask then holds as much of it as fits).
    """
    height, width = mask.shape[-2:]
    r0, c0, r1, c1 = mask_bounding_box(mask)
    side = int(min(max(side, r1 - r0 + 1, c1 - c0 + 1), height, width))
    top_lo, top_hi = max(r1 + 1 - side, 0), min(r0, height - side)
    left_lo, left_hi = max(c1 + 1 - side, 0), min(c0, width - side)
    top = rng.randint(min(top_lo, top_hi), max(top_lo, top_hi) + 1)
    left = rng.randint(min(left_lo, left_hi), max(left_lo, left_hi) + 1)
    return RoIWindow(int(top), int(left), side)


class RandCrossImageTaskd(Randomizable, Transform):
    """Sample one PropMask training task whose guide and queries are different generated scenes of one object.

    The input dictionary (a cached volume, when mixed with the slice-to-slice tasks) is not used: every task is a
    fresh scene pair drawn from a seed of this transform's random state.

    Args:
        num_queries: query scenes per task (Nq).
        size: output side S.
        scene_size: side of the generated scenes (default ``size``).
        crop_scale: the guide RoI's side relative to the guide mask's box, U(crop_scale).
        whole_guide_prob: probability that the guide is the whole scene instead of its RoI.
        whole_query_prob: probability, per query, that the query is the whole scene instead of a window.
        query_window: a query window's side relative to the scene, U(query_window) (at least the object's box).
        families: shape families to draw from (default: all, with the generator's weights).
        scene_kwargs: more arguments of :func:`~pam_monai.data.synthetic.pairs.generate_scene_pair`
            (``diameter_range``, ``max_elastic``, ``gain_range``, ``offset_range``, ``modality``).
    """

    def __init__(
        self,
        *,
        num_queries: int = 4,
        size: int = 224,
        scene_size: int | None = None,
        crop_scale: Sequence[float] = (1.0, 2.0),
        whole_guide_prob: float = 0.5,
        whole_query_prob: float = 0.5,
        query_window: Sequence[float] = (0.4, 1.0),
        families: Sequence[str] | None = None,
        **scene_kwargs: Any,
    ) -> None:
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
        for name, p in (("whole_guide_prob", whole_guide_prob), ("whole_query_prob", whole_query_prob)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}.")
        unknown = [f for f in families or () if f not in PAIR_FAMILIES]
        if unknown:
            raise ValueError(f"unknown shape family {unknown[0]!r}; choose from {', '.join(PAIR_FAMILIES)}.")
        self.num_queries, self.size = int(num_queries), int(size)
        self.scene_size = int(scene_size or size)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[-1]))
        self.whole_guide_prob, self.whole_query_prob = float(whole_guide_prob), float(whole_query_prob)
        self.query_window = (float(query_window[0]), float(query_window[-1]))
        self.families = tuple(families) if families else None
        self.scene_kwargs = scene_kwargs

    def randomize(self, data: Any = None) -> None:  # the draws happen in __call__, all from self.R
        pass

    def __call__(self, data: Mapping[Hashable, Any] | None = None) -> dict[str, Any]:
        seed = int(self.R.randint(MAX_SEED))
        family = None if self.families is None else self.families[self.R.randint(len(self.families))]
        pair = generate_scene_pair(seed, self.scene_size, self.num_queries, family=family, **self.scene_kwargs)
        guide_image = torch.from_numpy(pair.guide_image)
        guide_mask = torch.from_numpy(pair.guide_mask)
        lo, hi = guided_window(guide_image, guide_mask)
        scene = self.scene_size
        if self.R.uniform() < self.whole_guide_prob:
            guide_window = RoIWindow(0, 0, scene)
        else:
            guide_window = square_roi(guide_mask, float(self.R.uniform(*self.crop_scale)))
        images, masks = [guide_image], [guide_mask]
        windows = [guide_window]
        for image, mask in zip(pair.query_images, pair.query_masks):
            query_mask = torch.from_numpy(mask)
            if self.R.uniform() < self.whole_query_prob:
                windows.append(RoIWindow(0, 0, scene))
            else:
                side = int(round(self.R.uniform(*self.query_window) * scene))
                windows.append(containing_window(query_mask, side, self.R))
            images.append(torch.from_numpy(image))
            masks.append(query_mask)
        crops = torch.cat([crop_resize(i[None], w, self.size, pad_value=lo) for i, w in zip(images, windows)])
        crops = apply_window(crops, lo, hi)
        mask_crops = torch.cat(
            [crop_resize(m[None].float(), w, self.size, mode="nearest-exact") for m, w in zip(masks, windows)]
        )
        mask_crops = (mask_crops > 0.5).float()
        return {
            "guide_image": crops[:1].contiguous(),
            "guide_mask": mask_crops[:1].contiguous(),
            "query_images": crops[1:, None].contiguous(),
            "query_masks": mask_crops[1:, None].contiguous(),
            "axis": -1,
            "object_label": PAIR_FAMILIES.index(pair.family) + 1,
            "guide_slice": -1,
            "guide_pixels": int(guide_mask.sum()),
            "query_slices": torch.full((self.num_queries,), -1, dtype=torch.long),
        }


class RandMixedTaskd(Randomizable, Transform):
    """A cross-image task with probability ``cross_share``, else a slice-to-slice task of the same volume.

    Args:
        tasks: the slice-to-slice sampler (:class:`~pam_monai.transforms.tasks.RandPropagationTaskd`).
        cross: the cross-image sampler (:class:`RandCrossImageTaskd`).
        cross_share: probability in [0, 1] of a cross-image task.

    ``set_random_state`` also seeds both samplers (from this transform's new state), so a seeded mixer draws the
    same tasks whatever ran before.
    """

    def __init__(self, *, tasks: Transform, cross: Transform, cross_share: float) -> None:
        share = float(cross_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"cross_share must be a probability in [0, 1], got {cross_share!r}.")
        self.tasks, self.cross, self.cross_share = tasks, cross, share

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandMixedTaskd:
        super().set_random_state(seed, state)
        for sampler in (self.tasks, self.cross):
            if isinstance(sampler, Randomizable):
                sampler.set_random_state(seed=int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data: Any = None) -> None:
        self._cross = bool(self.R.uniform() < self.cross_share)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        self.randomize()
        return self.cross(data) if self._cross else self.tasks(data)
