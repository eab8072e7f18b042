"""Fine-tune PAM from the labels saved in the MONAI Label datastore, through the bundle's ``train.json``.

The labels submitted with ``PUT /datastore/label`` (tag ``final``) become the bundle's ``train_datalist`` (and a
``validation_datalist`` split off by ``val_split``); training starts from the weights inference uses now and
exports the result to ``<model_dir>/model.pt`` (``box2mask.pt`` for ``target=box2mask``), where the next inference
picks it up. Training checkpoints go to ``<model_dir>/checkpoints/<target>``. The bundle itself is never written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import torch

from lib.compat import import_monailabel_without_torchvision

import_monailabel_without_torchvision()

from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.tasks.train.bundle import BundleTrainTask  # noqa: E402
from monailabel.utils.others.generic import device_list, name_to_device  # noqa: E402

from pam_monai.data.datalist import DatalistError, validate_datalist  # noqa: E402
from pam_monai.networks import NETWORK_CONFIGS  # noqa: E402
from pam_monai.networks.checkpoint import CheckpointError, infer_network_config, read_checkpoint  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["PAMTrainTask", "TRAIN_OPTIONS"]

WEIGHT_FILES = {"propmask": "model.pt", "box2mask": "box2mask.pt"}
# Request keys passed to the bundle as they are (train.json names), with the defaults /info/ shows.
TRAIN_OPTIONS: dict[str, Any] = {
    "epoch_length": 0,  # iterations per epoch; 0 = one pass over the tasks of all volumes
    "batch_size": 4,
    "tasks_per_volume": 10,
    "val_tasks_per_volume": 8,
    "learning_rate": 0.0,  # 0 = the bundle's default for the target
    "num_workers": 0,
    "cpu_threads": 0,  # 0 = torch's default
    "input_size": 0,  # 0 = the size the starting weights were trained for (or the configuration's)
    "seed": 0,
}


class PAMTrainTask(BundleTrainTask):
    """A :class:`BundleTrainTask` for PAM's ``train.json``.

    Args:
        bundle_path: the bundle folder.
        conf: the app's ``--conf`` options.
        model_dir: where the trained weights are exported (and read back by :class:`lib.infers.pam.PAMInferTask`).
    """

    def __init__(self, bundle_path: str, conf: dict[str, str], model_dir: str) -> None:
        super().__init__(bundle_path, conf, enable_tracking=False)
        self.model_dir = model_dir
        self._stats_path = os.path.join(model_dir, "train_stats.json")

    def config(self) -> dict[str, Any]:
        return {
            "device": device_list(),
            "target": ["propmask", "box2mask"],
            "pretrained": True,  # start from the weights inference uses now
            "max_epochs": 10,
            "val_split": 0.2,
            "network_config": ["auto", *NETWORK_CONFIGS],  # auto: the starting weights' configuration
            **TRAIN_OPTIONS,
        }

    def stats(self) -> dict[str, Any]:
        try:
            with open(self._stats_path) as fp:
                return json.load(fp)
        except (OSError, ValueError):
            return {}

    # ----------------------------------------------------------------------------------------------- helpers
    def _starting_weights(self, target: str) -> str | None:
        for folder in (self.model_dir, os.path.join(self.bundle_path, "models")):
            path = os.path.join(folder, WEIGHT_FILES[target])
            if os.path.isfile(path):
                return path
        return None

    @staticmethod
    def _configuration_of(path: str, target: str) -> tuple[str | None, int | None]:
        """The named configuration (``paper`` / ``light``) and input size that weights were trained with."""
        config = infer_network_config(read_checkpoint(path), target)
        name = next((n for n, c in NETWORK_CONFIGS.items() if tuple(c["features"]) == tuple(config["features"])), None)
        size = None
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
            size = stored["config"].get("input_size")
        return name, int(size) if size else None

    def _partition_datalist(self, datalist: list[dict[str, Any]], request: dict[str, Any], shuffle: bool = False):
        if len(datalist) < 2:  # one labelled volume: train on it, validate on nothing
            return datalist, []
        train, val = super()._partition_datalist(datalist, request, shuffle)
        if not train:
            return datalist, []
        return train, val or []

    # ------------------------------------------------------------------------------------------------- train
    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        logger.info(f"PAM train request: {request}")
        target = _choice(request.get("target"), "propmask")
        if target not in WEIGHT_FILES:
            raise ValueError(f"target must be propmask or box2mask, got {target!r}.")
        datalist = self._fetch_datalist(request, datastore)
        if not datalist:
            raise ValueError("no labelled images in the datastore: submit labels (PUT /datastore/label) first.")
        try:
            datalist = validate_datalist(datalist)
        except DatalistError as error:
            raise ValueError(f"cannot train on the datastore's labels: {error}") from None
        train_ds, val_ds = self._partition_datalist(datalist, request)

        starting = self._starting_weights(target) if _flag(request.get("pretrained", True)) else None
        network_config = _choice(request.get("network_config"), "auto")
        input_size = int(request.get("input_size") or 0) or None
        if starting is not None:
            try:
                named, trained_size = self._configuration_of(starting, target)
            except CheckpointError as error:
                raise ValueError(f"cannot fine-tune from {starting}: {error}") from None
            if named is None:
                raise ValueError(f"{starting} has a network width that train.json cannot build (not paper / light).")
            network_config = named if network_config == "auto" else network_config
            input_size = input_size or trained_size
        if network_config == "auto":
            network_config = str(self.bundle_config.get("network_config", "light"))

        os.makedirs(self.model_dir, exist_ok=True)
        export_path = os.path.join(self.model_dir, WEIGHT_FILES[target])
        overrides: dict[str, Any] = {
            self.const.key_bundle_root(): self.bundle_path,
            self.const.key_device(): name_to_device(_choice(request.get("device"), "cuda")),
            "target": target,
            "network_config": network_config,
            "train_datalist": train_ds,
            "validation_datalist": val_ds,
            "num_epochs": int(request.get("max_epochs", 10)),
            "ckpt_dir": os.path.join(self.model_dir, "checkpoints", target),
            "export_path": export_path,
            "resume": False,  # every request fine-tunes afresh from the current weights
            "use_synthetic": False,
        }
        if starting is not None:
            overrides["pretrained_checkpoint"] = starting
        if input_size:
            overrides["input_size"] = int(input_size)
        for key, default in TRAIN_OPTIONS.items():
            value = request.get(key, default)
            if key == "input_size" or value in (None, ""):
                continue
            if key == "epoch_length":
                overrides[key] = int(value) or None
            elif key in ("learning_rate",):
                if float(value) > 0:
                    overrides[key] = float(value)
            elif key == "cpu_threads":
                if int(value) > 0:
                    overrides[key] = int(value)
            else:
                overrides[key] = int(value)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        self._update_overrides(overrides)

        logger.info(
            f"PAM training {target} ({network_config}, input {overrides.get('input_size', 'default')}) on "
            f"{len(train_ds)} volume(s), validating on {len(val_ds)}; from {starting or 'scratch'} -> {export_path}"
        )
        started = time.time()
        sys.path.insert(0, self.bundle_path)
        try:
            self.run_single_gpu(request, overrides)
        finally:
            sys.path.remove(self.bundle_path)
        stats = {
            "target": target,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": round(time.time() - started, 2),
            "epochs": overrides["num_epochs"],
            "train_volumes": len(train_ds),
            "validation_volumes": len(val_ds),
            "started_from": starting,
            "weights": export_path,
        }
        with open(self._stats_path, "w") as fp:
            json.dump(stats, fp, indent=2)
        logger.info(f"PAM training finished: {stats}")
        return stats


def _choice(value: Any, default: str) -> str:
    """A request value that may be an option list (its first entry) or empty."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else default


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
