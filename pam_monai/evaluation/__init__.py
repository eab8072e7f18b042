from pam_monai.evaluation.baseline import random_walker_baseline
from pam_monai.evaluation.metrics import irregularity, object_metrics
from pam_monai.evaluation.objects import ObjectTaskDataset, first_item, object_prompt, prepare_object_batch
from pam_monai.evaluation.report import ObjectMetricsReport, summarise

__all__ = [
    "ObjectMetricsReport",
    "ObjectTaskDataset",
    "first_item",
    "irregularity",
    "object_metrics",
    "object_prompt",
    "prepare_object_batch",
    "random_walker_baseline",
    "summarise",
]
