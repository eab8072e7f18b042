"""The evaluation section across ``torchrun`` ranks (``configs/multi_gpu_evaluate.json``).

Each rank evaluates its share of the validation datalist (:func:`partition`, MONAI's ``partition_dataset``);
:class:`GatherObjectRows` then collects every rank's per-object rows on rank 0, whose
:class:`~pam_monai.evaluation.ObjectMetricsReport` writes the one table, as a single process would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import partition_dataset

from pam_monai.errors import DatalistError
from pam_monai.evaluation import ObjectMetricsReport

__all__ = ["GatherObjectRows", "is_main_process", "partition"]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one)."""
    return _world()[0] == 0


def partition(items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """This rank's share of ``items``: every ``world_size``-th item from the rank's index (all of them in a single
    process).

    Raises:
        DatalistError: fewer items than processes (a rank would have nothing to evaluate).
    """
    rank, world = _world()
    if world == 1:
        return list(items)
    if len(items) < world:
        raise DatalistError(
            f"{len(items)} validation volumes for {world} processes: give at least one volume per process."
        )
    return list(partition_dataset(data=list(items), num_partitions=world, shuffle=False, even_divisible=False)[rank])


class GatherObjectRows:
    """Ignite handler: when the evaluation completes, rank 0's ``report`` gets every rank's per-object rows (the
    others' are emptied, so only rank 0 writes ``per_object.csv`` and the summaries).

    Attach it before ``report``: ignite runs ``COMPLETED`` handlers in the order they were attached.

    Args:
        report: the evaluation's :class:`~pam_monai.evaluation.ObjectMetricsReport`.
        datalist: the whole validation datalist; gathered rows follow its order (as in a single process), rows of
            volumes not in it (generated ones) come last.
    """

    def __init__(self, *, report: ObjectMetricsReport, datalist: Sequence[Mapping[str, Any]] = ()) -> None:
        self.report = report
        self.order = {str(item["image"]): index for index, item in enumerate(datalist)}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        rank, world = _world()
        if world == 1:
            return
        gathered: list[list[dict[str, Any]] | None] = [None] * world
        dist.all_gather_object(gathered, self.report.rows)
        if rank != 0:
            self.report.rows = []
            return
        rows = [row for part in gathered for row in part or []]
        rows.sort(key=lambda row: self.order.get(str(row.get("volume")), len(self.order)))
        self.report.rows = rows
