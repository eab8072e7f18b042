"""Training data: volumes read (or generated) once and cached, random tasks drawn from them every epoch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import CacheDataset, Dataset

from pam_monai.engines.utils import as_bool, check_target, limit_worker_threads
from pam_monai.errors import TrainingSetupError
from pam_monai.transforms.cross_tasks import RandCrossImageTaskd, RandMixedTaskd
from pam_monai.transforms.tasks import RandBox2MaskSampled, RandPropagationTaskd

__all__ = ["TaskDataset", "check_cross_image_share", "require_training_volumes", "task_transform", "volume_dataset"]


def check_cross_image_share(share: Any, target: str = "propmask") -> float:
    """``share`` as a float in [0, 1]; a positive share only for PropMask.

    Raises:
        TrainingSetupError: not a number in [0, 1], or positive for Box2Mask.
    """
    try:
        value = float(share)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise TrainingSetupError(f"cross_image_share must be a number in [0, 1], got {share!r}.")
    if value > 0.0 and check_target(target) != "propmask":
        raise TrainingSetupError(f"cross_image_share applies to PropMask training only, got {share!r} for {target}.")
    return value


def task_transform(
    target: str,
    size: int,
    augment: bool = True,
    num_queries: int = 4,
    thickness_mm: float = 20.0,
    min_pixels: int = 100,
    axes: Sequence[int] = (0, 1, 2),
    cross_image_share: float = 0.0,
) -> RandPropagationTaskd | RandBox2MaskSampled | RandMixedTaskd:
    """The task sampler of ``target``.

    ``augment=False`` gives validation tasks as at inference: crop ratio 1.5 (PropMask), box scale U(1.0, 1.25)
    (Box2Mask), no flips, rotation or intensity changes. ``cross_image_share > 0`` (PropMask only) mixes in
    cross-image tasks (:class:`~pam_monai.transforms.cross_tasks.RandCrossImageTaskd`, ``num_queries`` scenes of
    side ``size``) at that share; ``0`` returns the slice-to-slice sampler itself, unchanged.

    Raises:
        TrainingSetupError: an unknown target, or a bad ``cross_image_share`` (:func:`check_cross_image_share`).
    """
    share = check_cross_image_share(cross_image_share, target)
    if share > 0.0:
        return RandMixedTaskd(
            tasks=task_transform(target, size, augment, num_queries, thickness_mm, min_pixels, axes),
            cross=RandCrossImageTaskd(
                num_queries=num_queries, size=size, crop_scale=(1.0, 2.0) if augment else (1.5, 1.5)
            ),
            cross_share=share,
        )
    if target == "propmask":
        return RandPropagationTaskd(
            num_queries=num_queries,
            thickness_mm=thickness_mm,
            min_guide_pixels=min_pixels,
            crop_scale=(1.0, 2.0) if augment else (1.5, 1.5),
            size=size,
            flip_prob=0.5 if augment else 0.0,
            rotate_prob=0.5 if augment else 0.0,
            axes=axes,
        )
    return RandBox2MaskSampled(
        min_pixels=min_pixels,
        size=size,
        flip_prob=0.5 if augment else 0.0,
        rotate_prob=0.5 if augment else 0.0,
        brightness=0.2 if augment else 0.0,
        contrast=0.2 if augment else 0.0,
        axes=axes,
    )


def volume_dataset(
    items: Sequence[Mapping[str, Any]],
    transform: Callable[..., Any] | None,
    synthetic_volumes: int = 0,
    synthetic_shape: Sequence[int] = (96, 96, 64),
    synthetic_seed: int = 0,
    synthetic_transform: Callable[..., Any] | None = None,
    cache_rate: float = 1.0,
    num_workers: int | None = 1,
    synthetic_hidden_boundaries: float | None = None,
) -> torch.utils.data.Dataset:
    """Cached training volumes: datalist entries read by ``transform`` plus ``synthetic_volumes`` generated ones.

    Each part is a MONAI ``CacheDataset`` (``copy_cache=False``: the task samplers never modify a volume), so the
    volumes are read or generated once, at start-up. Synthetic volume ``i`` comes from seed ``synthetic_seed + i``
    (:class:`pam_monai.data.synthetic.SyntheticVolumeDataset`, as MetaTensors with their spacing), generated with
    ``synthetic_hidden_boundaries`` as the generator's ``hidden_boundaries`` (``None``: its default).

    Returns:
        one dataset, or a ``ConcatDataset`` of both parts (possibly empty).

    Raises:
        TrainingSetupError: ``synthetic_hidden_boundaries`` is not a probability.
    """
    if synthetic_hidden_boundaries is not None:
        try:
            share = float(synthetic_hidden_boundaries)
        except (TypeError, ValueError):
            share = float("nan")
        if not 0.0 <= share <= 1.0:
            raise TrainingSetupError(
                f"synthetic_hidden_boundaries must be a probability in [0, 1], got {synthetic_hidden_boundaries!r}."
            )
    workers = max(int(num_workers or 1), 1)
    parts: list[torch.utils.data.Dataset] = []
    if items:
        parts.append(
            CacheDataset(
                data=list(items),
                transform=transform,
                cache_rate=cache_rate,
                num_workers=workers,
                copy_cache=False,
                progress=False,
            )
        )
    if int(synthetic_volumes) > 0:
        from pam_monai.data.synthetic import SyntheticVolumeDataset

        generated = SyntheticVolumeDataset(
            int(synthetic_volumes),
            shape=tuple(int(s) for s in synthetic_shape),
            seed=int(synthetic_seed),
            as_meta_tensor=True,
            hidden_boundaries=synthetic_hidden_boundaries,
        )
        if workers > 1:
            # Generation is numpy/scipy work that holds the GIL: CacheDataset's threads would run it one at a time,
            # worker processes run it in parallel (in order, so the volumes stay those of their seeds).
            generated = list(
                torch.utils.data.DataLoader(
                    generated,
                    batch_size=None,
                    num_workers=workers,
                    collate_fn=_unchanged,
                    worker_init_fn=limit_worker_threads,
                )
            )
        parts.append(
            CacheDataset(
                data=generated,
                transform=synthetic_transform,
                cache_rate=1.0,
                num_workers=workers,
                copy_cache=False,
                progress=False,
            )
        )
    if not parts:
        return Dataset(data=[])
    if len(parts) == 1:
        return parts[0]
    return torch.utils.data.ConcatDataset(parts)


def _unchanged(item: Any) -> Any:
    return item


def require_training_volumes(items: Sequence[Any], use_synthetic: Any, data_list_file_path: Any = None) -> bool:
    """Fail at start-up when there is nothing to train on.

    Raises:
        TrainingSetupError: no datalist entries and no synthetic volumes.
    """
    if not items and not as_bool(use_synthetic):
        where = f" ({data_list_file_path})" if data_list_file_path else ""
        raise TrainingSetupError(
            f"no training volumes{where}: give --dataset_dir with a dataset.json, or --use_synthetic true."
        )
    return True


class TaskDataset(torch.utils.data.Dataset):
    """``tasks_per_volume`` random tasks from every volume of ``volumes`` (index ``i`` -> volume ``i // k``).

    Args:
        volumes: cached volume dicts (e.g. :func:`volume_dataset`).
        transform: a task sampler (:class:`RandPropagationTaskd` / :class:`RandBox2MaskSampled`).
        tasks_per_volume: tasks drawn from each volume per pass (epoch).
        seed: ``None`` for training (the sampler's random state advances; MONAI's ``DataLoader`` seeds it per
            worker and epoch); an integer fixes task ``i`` to seed ``seed + i`` (held-out validation tasks identical
            in every epoch, whatever the workers).
    """

    def __init__(
        self,
        volumes: Sequence[Mapping[str, Any]] | torch.utils.data.Dataset,
        transform: Callable[[Mapping[str, Any]], dict[str, Any]],
        tasks_per_volume: int = 1,
        seed: int | None = None,
    ) -> None:
        if int(tasks_per_volume) < 1:
            raise TrainingSetupError(f"tasks_per_volume must be >= 1, got {tasks_per_volume}.")
        self.volumes = volumes
        self.transform = transform
        self.tasks_per_volume = int(tasks_per_volume)
        self.seed = None if seed is None else int(seed)

    def __len__(self) -> int:
        return len(self.volumes) * self.tasks_per_volume  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"task index {index} out of range for {len(self)} tasks.")
        index %= len(self)
        if self.seed is not None and hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=(self.seed + index) % (2**32))
        return self.transform(self.volumes[index // self.tasks_per_volume])
