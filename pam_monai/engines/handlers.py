"""Training PropMask and Box2Mask with MONAI engines (``SupervisedTrainer`` / ``SupervisedEvaluator``).

The pieces the bundle config ``bundle/configs/train.json`` wires together:

* data: volumes read once and cached (:func:`volume_dataset`, real datalist entries and / or synthetic volumes),
  then :class:`TaskDataset` draws ``tasks_per_volume`` random tasks per volume and epoch with the samplers of
  :mod:`pam_monai.transforms.tasks` (no file reads per iteration);
* batches: :func:`prepare_propagation_batch` / :func:`prepare_box2mask_batch` turn collated tasks into
  ``(inputs, targets)`` for the engines; :class:`pam_monai.inferers.task.TaskInferer` unpacks ``inputs`` so the
  PropMask gets its three arguments;
* loss: :func:`deep_supervision_dice_loss`, soft Dice averaged over the deep-supervision heads;
* metric: :func:`segmentation_output_transform` feeds MONAI's ``MeanDice`` with the soft vote of all heads, as at
  inference;
* handlers: :class:`TrainingCheckpoint` (save every N iterations + final, resume from the newest checkpoint after a
  kill), :class:`TaskThroughputLogger` (tasks per second);
* export: :func:`export_network` writes the trained weights in this package's checkpoint format (float16).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, Dataset, MetaTensor
from monai.losses import DeepSupervisionLoss, DiceLoss
from monai.utils import CommonKeys
from torch import nn

from pam_monai.inferers.box2mask import foreground_probability
from pam_monai.networks.checkpoint import CheckpointError, load_network_weights
from pam_monai.networks.configs import build_box2mask, build_propmask
from pam_monai.transforms.tasks import RandBox2MaskSampled, RandPropagationTaskd
from pam_monai.workflows.errors import TrainingSetupError

__all__ = [
    "TARGETS",
    "TaskDataset",
    "TaskThroughputLogger",
    "TrainingCheckpoint",
    "TrainingTimeLimit",
    "as_bool",
    "build_network",
    "checkpoint_candidates",
    "deep_supervision_dice_loss",
    "export_network",
    "limit_worker_threads",
    "load_pretrained",
    "prepare_batch_for",
    "prepare_box2mask_batch",
    "prepare_propagation_batch",
    "require_training_volumes",
    "segmentation_output_transform",
    "task_transform",
    "volume_dataset",
]

logger = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("propmask", "box2mask")
"""The two trainable networks."""

_CHECKPOINT_RE = re.compile(r"iteration=(\d+)\.pt$")


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise TrainingSetupError(f"target must be one of {TARGETS}, got {target!r}.")
    return target


def as_bool(value: Any) -> bool:
    """Interpret command-line style booleans (``true`` / ``false`` / ``1`` / ``0`` / ``yes`` / ``no``)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on", "y", "t"):
            return True
        if text in ("0", "false", "no", "off", "n", "f", "", "none", "null"):
            return False
        raise TrainingSetupError(f"cannot read {value!r} as a boolean (use true or false).")
    return bool(value)


# ---------------------------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------------------------


def build_network(target: str, network_config: str = "paper", input_size: int | None = None) -> nn.Module:
    """A fresh PropMask (``target="propmask"``) or Box2Mask network of the named configuration.

    Args:
        target: ``"propmask"`` or ``"box2mask"``.
        network_config: ``"paper"`` or ``"light"`` (see :data:`pam_monai.networks.NETWORK_CONFIGS`).
        input_size: side of the training crops (default: the configuration's).
    """
    overrides = {} if input_size is None else {"input_size": int(input_size)}
    builder = build_propmask if _check_target(target) == "propmask" else build_box2mask
    try:
        return builder(network_config, **overrides)
    except (TypeError, ValueError) as exc:
        raise TrainingSetupError(" ".join(str(exc).split())) from exc


def load_pretrained(network: nn.Module, checkpoint: str | os.PathLike[str] | None) -> nn.Module:
    """Load fine-tuning weights (this package's checkpoints, training checkpoints or reference weights).

    ``None`` / ``""`` leaves the network as it is. Weights of another width raise
    :class:`~pam_monai.networks.checkpoint.CheckpointError` (choose the matching ``network_config``).
    """
    if checkpoint is None or str(checkpoint).strip().lower() in ("", "none", "null"):
        return network
    try:
        load_network_weights(network, checkpoint)
    except CheckpointError as exc:
        hint = (
            " Choose the network_config (paper / light) the weights were trained with." if "shape" in str(exc) else ""
        )
        message = str(exc) if str(checkpoint) in str(exc) else f"{checkpoint}: {exc}"
        raise CheckpointError(message + hint) from exc
    logger.info(f"fine-tuning from {checkpoint}")
    return network


def _unwrap(network: nn.Module) -> nn.Module:
    while hasattr(network, "module") and isinstance(network.module, nn.Module):
        network = network.module
    return network


def export_network(network: nn.Module, path: str | os.PathLike[str], target: str | None = None) -> Path:
    """Write the trained weights as a plain float16 state dict (atomic), the bundle's ``models/*.pt`` format.

    A plain state dict is what MONAI's bundle tools and MONAI Label load into ``network_def``; float16 halves the
    size, and ``load_state_dict`` casts it back. It also loads with
    :func:`~pam_monai.networks.checkpoint.build_network_from_checkpoint`.
    """
    from pam_monai.data.io import atomic_path

    if target is not None:
        _check_target(target)
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
        for k, v in _unwrap(network).state_dict().items()
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    logger.info(f"exported the {target or 'trained'} weights to {path}")
    return Path(path)


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


def task_transform(
    target: str,
    size: int,
    augment: bool = True,
    num_queries: int = 4,
    thickness_mm: float = 20.0,
    min_pixels: int = 100,
    axes: Sequence[int] = (0, 1, 2),
) -> RandPropagationTaskd | RandBox2MaskSampled:
    """The task sampler of ``target``.

    ``augment=False`` gives validation tasks as at inference: crop ratio 1.5 (PropMask), box scale U(1.0, 1.25)
    (Box2Mask), no flips, rotation or intensity changes.
    """
    if _check_target(target) == "propmask":
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


def limit_worker_threads(worker_id: int = 0) -> None:
    """``worker_init_fn`` for data-loading processes: one BLAS/OpenMP thread and one torch thread each.

    A worker inherits its parent's thread pools; numpy's BLAS would start as many threads as there are cores in
    every worker, and on a 16-core machine 15 workers x 16 threads made volume generation 15 times slower.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


def require_training_volumes(items: Sequence[Any], use_synthetic: Any, data_list_file_path: Any = None) -> bool:
    """Fail at start-up when there is nothing to train on."""
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


# ---------------------------------------------------------------------------------------------------------------
# batches, loss, metric
# ---------------------------------------------------------------------------------------------------------------


def _to(x: torch.Tensor, device: str | torch.device | None, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    return x.to(device=device, non_blocking=non_blocking, **kwargs) if device is not None or kwargs else x


def prepare_propagation_batch(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``prepare_batch`` of the PropMask engines.

    Args:
        batchdata: collated tasks: ``guide_image`` / ``guide_mask`` ``(B, 1, S, S)``, ``query_images`` /
            ``query_masks`` ``(B, Nq, 1, S, S)``.
        device: target device.
        non_blocking: non-blocking copies.
        kwargs: more arguments of ``Tensor.to`` (e.g. ``memory_format``).

    Returns:
        ``((guide_image, guide_mask, query_images), query_masks (B * Nq, 1, S, S))``; with
        :class:`~pam_monai.inferers.task.TaskInferer` the network is called as
        ``network(guide_image, guide_mask, query_images)``.
    """
    guide_image = _to(batchdata["guide_image"], device, non_blocking, **kwargs).float()
    guide_mask = _to(batchdata["guide_mask"], device, non_blocking, **kwargs).float()
    query_images = _to(batchdata["query_images"], device, non_blocking, **kwargs).float()
    targets = _to(batchdata["query_masks"], device, non_blocking, **kwargs).float().flatten(0, 1)
    return (guide_image, guide_mask, query_images), targets


def prepare_box2mask_batch(
    batchdata: Mapping[str, torch.Tensor],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` of the Box2Mask engines: ``(image (B, 1, S, S), label (B, 1, S, S))``."""
    image = _to(batchdata[CommonKeys.IMAGE], device, non_blocking, **kwargs).float()
    label = _to(batchdata[CommonKeys.LABEL], device, non_blocking, **kwargs).float()
    return image, label


def prepare_batch_for(target: str) -> Callable[..., Any]:
    """The ``prepare_batch`` function of ``target``."""
    return prepare_propagation_batch if _check_target(target) == "propmask" else prepare_box2mask_batch


def deep_supervision_dice_loss(num_heads: int = 5, **dice_kwargs: Any) -> DeepSupervisionLoss:
    """Soft Dice averaged over ``num_heads`` deep-supervision heads (targets downsampled by nearest-exact).

    Defaults: ``DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)`` with
    ``smooth_nr = smooth_dr = 1e-5``; ``dice_kwargs`` override them.
    """
    options = {
        "softmax": True,
        "to_onehot_y": True,
        "include_background": False,
        "batch": True,
        "smooth_nr": 1e-5,
        "smooth_dr": 1e-5,
        **dice_kwargs,
    }
    return DeepSupervisionLoss(DiceLoss(**options), weights=[1.0 / num_heads] * num_heads)


def segmentation_output_transform(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``output_transform`` for MONAI metric handlers: one-hot prediction and label, both ``(N, 2, S, S)``.

    The prediction is the soft vote of all heads (upsampled, averaged, argmax), as at inference.
    """
    pred, label = output[CommonKeys.PRED], output[CommonKeys.LABEL]
    heads = list(pred) if isinstance(pred, (list, tuple)) else [pred]
    label = _to(label, None, False).float()
    foreground = foreground_probability(heads, int(label.shape[-1])) > 0.5
    y_pred = torch.stack((~foreground, foreground), dim=1).float()
    y = torch.cat((1.0 - label, label), dim=1)
    return y_pred, y


# ---------------------------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------------------------


def checkpoint_candidates(ckpt_dir: str | os.PathLike[str]) -> list[Path]:
    """Training checkpoints in ``ckpt_dir`` (``*iteration=N.pt``), newest (highest N, then latest file) first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_RE.search(path.name)
        if match and path.is_file() and not path.name.startswith("."):
            found.append((int(match.group(1)), path.stat().st_mtime, path))
    return [p for _, _, p in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


class TrainingCheckpoint:
    """Save the whole training state every ``save_interval`` iterations (and at the end), resume from it.

    Wraps MONAI's ``CheckpointSaver`` / ``CheckpointLoader`` and adds the engine itself to ``save_dict`` when
    attached (so the config needs no circular reference to the trainer). The files are named
    ``checkpoint_iteration=N.pt`` / ``checkpoint_final_iteration=N.pt``; with ``save_dict`` keys
    ``model_state_dict`` etc. they also load with :func:`~pam_monai.networks.checkpoint.build_network_from_checkpoint`.

    On ``STARTED`` (``resume=True``) the newest checkpoint in ``save_dir`` is restored: network, optimizer,
    scheduler and the trainer's iteration / epoch, so a killed run continues where its last checkpoint was taken
    (a finished run does nothing more unless ``max_epochs`` was raised). An unreadable (e.g. truncated) newest file
    is skipped for the next one; a checkpoint that does not fit the network raises.

    Args:
        save_dir: checkpoint folder.
        save_dict: objects to save besides the engine, e.g. ``{"model_state_dict": net, "optimizer_state_dict":
            opt, "scheduler_state_dict": sched}``.
        save_interval: iterations between checkpoints (0: none but the final one).
        n_saved: interval checkpoints to keep.
        save_final: save at the end of training or on an exception (put this handler first in the list).
        resume: restore the newest checkpoint on start.
        engine_key: key of the engine state in the checkpoint.
        map_location: ``torch.load`` map location.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        save_dict: Mapping[str, Any],
        save_interval: int = 0,
        n_saved: int | None = 1,
        save_final: bool = True,
        resume: Any = True,
        engine_key: str = "trainer",
        map_location: str | None = "cpu",
    ) -> None:
        self.save_dir = str(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = int(save_interval)
        self.n_saved = n_saved
        self.save_final = as_bool(save_final)
        self.resume = as_bool(resume)
        self.engine_key = engine_key
        self.map_location = map_location
        self.restored_from: Path | None = None

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events
        from monai.handlers import CheckpointSaver

        objects = {**self.save_dict, self.engine_key: engine}
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._restore, objects)
        Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        CheckpointSaver(
            save_dir=self.save_dir,
            save_dict=objects,
            save_final=self.save_final,
            save_interval=self.save_interval,
            epoch_level=False,
            n_saved=self.n_saved,
        ).attach(engine)

    def _restore(self, engine: Any, objects: dict[str, Any]) -> None:
        from monai.handlers import CheckpointLoader

        for path in checkpoint_candidates(self.save_dir):
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated by a kill while writing, or foreign: try the previous one
                logger.warning(f"skipping unreadable checkpoint {path}: {' '.join(str(exc).split())[:200]}")
                continue
            epoch_length = engine.state.epoch_length
            try:
                CheckpointLoader(load_path=str(path), load_dict=objects, map_location=self.map_location)(engine)
            except Exception as exc:
                raise CheckpointError(
                    f"cannot resume from {path}: {' '.join(str(exc).split())[:300]} "
                    "(use another ckpt_dir, or --resume false to start afresh)."
                ) from exc
            self.restored_from = path
            if epoch_length is not None and engine.state.epoch_length != epoch_length:
                engine.logger.warning(
                    f"the checkpoint's epoch length ({engine.state.epoch_length} iterations) differs from this run's "
                    f"({epoch_length}); the resumed run keeps the checkpoint's (use --resume false to start afresh)."
                )
            engine.logger.info(f"resumed from {path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}")
            return


class TrainingTimeLimit:
    """End training cleanly once a wall-time budget is spent (a GPU lease, a queue slot, a night).

    The trainer is terminated after the iteration that crosses the budget, so ``COMPLETED`` handlers (the final
    checkpoint) and the bundle's ``finalize`` (the weights export) still run.

    Args:
        max_seconds: the budget, counted from the trainer's start; ``None`` or ``<= 0``: no limit.
    """

    def __init__(self, max_seconds: float | None = None) -> None:
        try:
            self.max_seconds = float(max_seconds) if max_seconds else 0.0
        except (TypeError, ValueError):
            raise TrainingSetupError(
                f"max_training_seconds must be a number of seconds, got {max_seconds!r}."
            ) from None
        self._start = 0.0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        if self.max_seconds <= 0:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _started(self, engine: Any) -> None:
        self._start = time.perf_counter()

    def _iteration_completed(self, engine: Any) -> None:
        elapsed = time.perf_counter() - self._start
        if elapsed >= self.max_seconds:
            engine.logger.info(
                f"training time limit reached ({elapsed:.0f} s >= {self.max_seconds:.0f} s) at epoch "
                f"{engine.state.epoch}, iteration {engine.state.iteration}: stopping"
            )
            engine.terminate()


class TaskThroughputLogger:
    """Log the training throughput (tasks per second, data loading included) at the end of every epoch.

    Args:
        batch_key: the batch entry whose first dimension counts the tasks (``guide_image`` or ``image``).
    """

    def __init__(self, batch_key: str = "guide_image") -> None:
        self.batch_key = batch_key
        self.tasks = 0
        self.seconds = 0.0
        self._start = 0.0
        self.history: list[float] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Any) -> None:
        self.tasks, self._start = 0, time.perf_counter()

    def _iteration_completed(self, engine: Any) -> None:
        batch = engine.state.batch
        if isinstance(batch, Sequence) and not isinstance(batch, (str, torch.Tensor)):
            self.tasks += len(batch)  # decollated: one dict per task
            return
        value = batch.get(self.batch_key) if isinstance(batch, Mapping) else None
        self.tasks += int(value.shape[0]) if isinstance(value, torch.Tensor) else 1

    def _epoch_completed(self, engine: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        rate = self.tasks / self.seconds if self.seconds > 0 else float("nan")
        self.history.append(rate)
        engine.logger.info(
            f"epoch {engine.state.epoch}: {self.tasks} tasks in {self.seconds:.1f} s ({rate:.2f} tasks/s)"
        )
