"""The training section's helpers (``configs/train.json``, ``multi_gpu_train.json``).

Each is the config's word for a ``pam-monai`` function: the networks of a ``target`` (``"propmask"`` or
``"box2mask"``), its task sampler and batch preparation, the cached volumes, the datalist and the export. The
engines' classes (``TaskDataset``, ``TrainingCheckpoint``, ``TrainingTimeLimit``, ``TaskThroughputLogger``) are named
by their public path in the configs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pam_monai.data.datalist import label_names, load_datalist
from pam_monai.engines import (
    as_bool,
    build_network,
    export_network,
    limit_worker_threads,
    load_pretrained,
    prepare_batch_for,
    require_training_volumes,
    segmentation_output_transform,
    task_transform,
    volume_dataset,
)
from pam_monai.networks import NETWORK_CONFIGS

__all__ = [
    "as_bool",
    "datalist",
    "export",
    "input_size",
    "label_names",
    "network",
    "network_def",
    "output_transform",
    "prepare_batch",
    "require_training_volumes",
    "task",
    "volumes",
    "worker_init",
]

worker_init = limit_worker_threads
"""``worker_init_fn`` of the loaders: one intra-op thread per loader process."""

output_transform = segmentation_output_transform
"""``output_transform`` of ``MeanDice``: the deepest head's prediction and the target, one-hot."""


def input_size(network_config: str) -> int:
    """The RoI side length (pixels) of a named network configuration (``"light"`` or ``"paper"``)."""
    return int(NETWORK_CONFIGS[network_config]["input_size"])


def network_def(target: str, network_config: str, size: int | None = None) -> nn.Module:
    """A freshly initialised PropMask (``target="propmask"``) or Box2Mask (``"box2mask"``) of a configuration."""
    return build_network(target, network_config, input_size=size)


def network(
    definition: nn.Module, pretrained_checkpoint: str | os.PathLike | None, device: str | torch.device
) -> nn.Module:
    """``definition`` with the weights of ``pretrained_checkpoint`` (any checkpoint format; ``None``: as is), on
    ``device``."""
    return load_pretrained(definition, pretrained_checkpoint).to(device)


def prepare_batch(target: str) -> Callable[..., Any]:
    """The ``prepare_batch`` of ``target``'s trainer and evaluator."""
    return prepare_batch_for(target)


def task(target: str, size: int, augment: bool, **kwargs: Any) -> Callable[..., Any]:
    """The random task sampler of ``target`` (``augment=False``: validation tasks, as at inference)."""
    return task_transform(target, size, augment=augment, **kwargs)


def volumes(items: Sequence[Mapping[str, Any]], transform: Callable[..., Any] | None, **kwargs: Any) -> Any:
    """The cached volumes of ``items`` (read by ``transform``) and the generated ones (``synthetic_volumes``...)."""
    return volume_dataset(items, transform, **kwargs)


def datalist(
    data_list_file_path: str | os.PathLike | None,
    section: str,
    base_dir: str | os.PathLike | None = None,
    required: bool = True,
) -> list[dict[str, Any]]:
    """A section (``"training"``, ``"validation"``) of a Decathlon ``dataset.json``, checked file by file."""
    return load_datalist(data_list_file_path, section, base_dir=base_dir, required=required)


def export(network: nn.Module, path: str | os.PathLike, target: str | None = None) -> Path:
    """Write the trained weights in the bundle's format (a float16 state dict, no ``module.`` prefix)."""
    return export_network(network, path, target)
