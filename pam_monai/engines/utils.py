"""Small helpers shared by the training pieces: the trainable targets, config booleans, worker threads."""

from __future__ import annotations

from typing import Any

import torch

from pam_monai.errors import TrainingSetupError

__all__ = ["TARGETS", "as_bool", "check_target", "limit_worker_threads"]

TARGETS: tuple[str, ...] = ("propmask", "box2mask")
"""The two trainable networks."""


def check_target(target: str) -> str:
    """``target`` if it names a trainable network (:data:`TARGETS`).

    Raises:
        TrainingSetupError: any other value.
    """
    if target not in TARGETS:
        raise TrainingSetupError(f"target must be one of {TARGETS}, got {target!r}.")
    return target


def as_bool(value: Any) -> bool:
    """Interpret command-line style booleans (``true`` / ``false`` / ``1`` / ``0`` / ``yes`` / ``no``).

    Raises:
        TrainingSetupError: a string that is none of them.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on", "y", "t"):
            return True
        if text in ("0", "false", "no", "off", "n", "f", "", "none", "null"):
            return False
        raise TrainingSetupError(f"cannot read {value!r} as a boolean (use true or false).")
    return bool(value)


def limit_worker_threads(worker_id: int = 0) -> None:
    """``worker_init_fn`` for data-loading processes: one BLAS/OpenMP thread and one torch thread each.

    A worker inherits its parent's thread pools; numpy's BLAS would start as many threads as there are cores in
    every worker, and on a 16-core machine 15 workers x 16 threads made volume generation 15 times slower.

    In a worker it also seeds the dataset's random transforms from the worker's torch seed, as MONAI's default
    ``worker_init_fn`` does (this function replaces it): otherwise every worker would copy the parent's random
    state and draw the same random numbers as the others, again in every epoch.
    """
    from monai.data.utils import set_rnd
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        set_rnd(info.dataset, seed=info.seed)
