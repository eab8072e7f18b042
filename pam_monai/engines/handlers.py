"""Training handlers: checkpoints that a killed run resumes from, a wall-time budget, the task throughput.

Each has ``attach(engine)``, so a bundle config lists it in ``train_handlers`` like MONAI's own handlers.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import TimeLimit

from pam_monai.engines.utils import as_bool
from pam_monai.errors import CheckpointError, TrainingSetupError

__all__ = ["TaskThroughputLogger", "TrainingCheckpoint", "TrainingTimeLimit", "checkpoint_candidates"]

logger = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"iteration=(\d+)\.pt$")


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


class TrainingTimeLimit(TimeLimit):
    """End training cleanly once a wall-time budget is spent (a GPU lease, a queue slot, a night).

    ignite's :class:`~ignite.handlers.TimeLimit`, counted from the trainer's ``STARTED`` event instead of the
    handler's creation (a bundle builds its handlers before it reads and caches the data) and accepting fractions
    of a second. The trainer is terminated after the first iteration that ends more than ``max_seconds`` after the
    start, so ``COMPLETED`` handlers (the final checkpoint) and the bundle's ``finalize`` (the weights export) still
    run.

    Args:
        max_seconds: the budget, counted from the trainer's start; ``None`` or ``<= 0``: no limit.

    Raises:
        TrainingSetupError: a budget that is not a number.
    """

    def __init__(self, max_seconds: float | None = None) -> None:
        try:
            self.max_seconds = float(max_seconds) if max_seconds else 0.0
        except (TypeError, ValueError):
            raise TrainingSetupError(
                f"max_training_seconds must be a number of seconds, got {max_seconds!r}."
            ) from None
        super().__init__(limit_sec=1)  # ignite checks for a positive int; its comparison takes any number
        self.limit_sec = self.max_seconds  # type: ignore[assignment]

    def attach(self, engine: Any) -> None:
        """Start the clock on ``STARTED`` and check it after every iteration (nothing without a budget)."""
        from ignite.engine import Events

        if self.max_seconds <= 0:
            return
        engine.add_event_handler(Events.STARTED, self.restart)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def restart(self, engine: Any = None) -> None:
        """Count the budget from now."""
        self.start_time = time.time()


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
