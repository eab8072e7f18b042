"""Training PropMask and Box2Mask with MONAI engines (``SupervisedTrainer`` / ``SupervisedEvaluator``).

The pieces the bundle's training config wires together:

* :mod:`~pam_monai.engines.data`: volumes read once and cached (:func:`volume_dataset`, real datalist entries and /
  or synthetic volumes), then :class:`TaskDataset` draws ``tasks_per_volume`` random tasks per volume and epoch
  with the samplers of :mod:`pam_monai.transforms.tasks` (no file reads per iteration);
* :mod:`~pam_monai.engines.batches`: :func:`prepare_propagation_batch` / :func:`prepare_box2mask_batch` turn
  collated tasks into ``(inputs, targets)``; the loss :func:`deep_supervision_dice_loss`; the metric transform
  :func:`segmentation_output_transform`;
* :mod:`~pam_monai.engines.handlers`: :class:`TrainingCheckpoint` (save every N iterations + final, resume from the
  newest checkpoint after a kill), :class:`TrainingTimeLimit` (ignite's ``TimeLimit`` from the trainer's start),
  :class:`TaskThroughputLogger` (tasks per second);
* :mod:`~pam_monai.engines.networks`: :func:`build_network`, :func:`load_pretrained` and :func:`export_network`
  (the trained weights in the bundle's format, float16).
"""

from pam_monai.engines.batches import (
    deep_supervision_dice_loss,
    prepare_batch_for,
    prepare_box2mask_batch,
    prepare_propagation_batch,
    segmentation_output_transform,
)
from pam_monai.engines.data import TaskDataset, require_training_volumes, task_transform, volume_dataset
from pam_monai.engines.handlers import (
    TaskThroughputLogger,
    TrainingCheckpoint,
    TrainingTimeLimit,
    checkpoint_candidates,
)
from pam_monai.engines.networks import build_network, export_network, load_pretrained, unwrap_network
from pam_monai.engines.utils import TARGETS, as_bool, check_target, limit_worker_threads

__all__ = [
    "TARGETS",
    "TaskDataset",
    "TaskThroughputLogger",
    "TrainingCheckpoint",
    "TrainingTimeLimit",
    "as_bool",
    "build_network",
    "check_target",
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
    "unwrap_network",
    "volume_dataset",
]
