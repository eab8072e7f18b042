"""The ``pam`` model: which bundle, where its trained weights live, and its infer and train tasks.

``--conf`` options (``monailabel start_server ... --conf KEY VALUE``):

- ``bundle_path``: the PAM bundle folder (default: ``bundle`` at the root of the repository this app sits in,
  ``<app>/../../bundle``). The app reads it and never copies or writes it.
- ``pam_model_dir``: where training exports weights and where inference looks for them first (default
  ``<app>/model/pam``); without weights there, the bundle's ``models/`` are used.
- ``label_name``: the name of the segmented object (default ``object``).
- ``infer_concurrency``: propagations run at the same time (default 2).
- ``preload``: ``true`` loads the networks at start-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig

from lib.infers.pam import PAMInferTask
from lib.trainers.pam import PAMTrainTask

logger = logging.getLogger(__name__)

__all__ = ["PAMConfig", "default_bundle_path"]


def default_bundle_path(app_dir: str | os.PathLike) -> str:
    """The repository's bundle, relative to the app: ``<app>/../../bundle``."""
    return str(Path(app_dir).resolve().parent.parent / "bundle")


class PAMConfig(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        app_dir = os.path.dirname(os.path.abspath(model_dir))
        bundle = conf.get("bundle_path") or default_bundle_path(app_dir)
        bundle = os.path.abspath(os.path.expanduser(bundle))
        for needed in ("inference.json", "train.json", "metadata.json"):
            if not os.path.isfile(os.path.join(bundle, "configs", needed)):
                raise FileNotFoundError(
                    f"PAM bundle not found: {os.path.join(bundle, 'configs', needed)} is missing; "
                    "pass --conf bundle_path <the repository's bundle folder>."
                )
        self.bundle_path = bundle
        self.pam_model_dir = os.path.abspath(conf.get("pam_model_dir") or os.path.join(model_dir, name))
        os.makedirs(self.pam_model_dir, exist_ok=True)
        self.path = [os.path.join(self.pam_model_dir, "model.pt")]
        logger.info(f"PAM: bundle {self.bundle_path}; trained weights in {self.pam_model_dir}")

    def infer(self, scribbles: bool = False) -> PAMInferTask:
        """The infer task; ``scribbles=True`` lists it as a scribbles model (3D Slicer's ROI tool lives there)."""
        return PAMInferTask(
            self.bundle_path,
            self.conf,
            self.pam_model_dir,
            label_name=self.conf.get("label_name", "object"),
            concurrency=int(self.conf.get("infer_concurrency", 2)),
            scribbles=scribbles,
        )

    def trainer(self) -> PAMTrainTask:
        return PAMTrainTask(self.bundle_path, self.conf, self.pam_model_dir)
