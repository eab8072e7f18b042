"""MONAI Label app serving PAM: one 2D prompt (box, clicks or a painted slice) -> a full 3D segmentation.

Start it with::

    monailabel start_server --app integrations/monailabel --studies <folder of images> --conf models pam

See ``integrations/monailabel/README.md`` for the prompts, the ``--conf`` options, 3D Slicer / OHIF and training.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

try:
    import pam_monai  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lib.compat import import_monailabel_without_torchvision

import_monailabel_without_torchvision()

from fastapi import HTTPException  # noqa: E402
from lib.configs.pam import PAMConfig  # noqa: E402
from lib.infers.pam import PAMRequestError  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.config import TaskConfig  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferTask  # noqa: E402
from monailabel.interfaces.tasks.strategy import Strategy  # noqa: E402
from monailabel.interfaces.tasks.train import TrainTask  # noqa: E402
from monailabel.tasks.activelearning.random import Random  # noqa: E402

logger = logging.getLogger(__name__)

MODELS: dict[str, type[TaskConfig]] = {"pam": PAMConfig}


def _selected_models(conf: dict[str, str]) -> list[str]:
    names = [m.strip() for m in str(conf.get("models", "pam")).split(",") if m.strip()]
    names = list(MODELS) if names in ([], ["all"]) else names
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown} in --conf models; this app serves {sorted(MODELS)}.")
    return names


def _install_json_error_handler() -> None:
    """Answer malformed ``params`` JSON with 400 instead of MONAI Label's 500 (only inside the server)."""
    server = sys.modules.get("monailabel.app")
    fastapi_app = getattr(server, "app", None)
    if fastapi_app is None or json.JSONDecodeError in fastapi_app.exception_handlers:
        return
    from fastapi.responses import JSONResponse

    async def bad_json(request: Any, error: json.JSONDecodeError) -> JSONResponse:
        return JSONResponse(
            status_code=400,
            content={"detail": f"params is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."},
        )

    fastapi_app.add_exception_handler(json.JSONDecodeError, bad_json)
    # The app is created before MONAI Label loads this file and Starlette builds its middleware (with the
    # handlers) on the first request; reset it so the next request rebuilds it with this handler.
    fastapi_app.middleware_stack = None


class PAMApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = os.path.join(app_dir, "model")
        self.models: dict[str, TaskConfig] = {}
        for name in _selected_models(conf):
            config = MODELS[name]()
            config.init(name, self.model_dir, conf, None)
            self.models[name] = config
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="PAM - propagate one 2D prompt to a 3D segmentation",
            description="Box (roi), clicks or a painted slice on one slice; PAM propagates it through the volume.",
            version="0.1.0",
        )
        _install_json_error_handler()

    def init_infers(self) -> dict[str, InferTask]:
        return {name: config.infer() for name, config in self.models.items()}  # type: ignore[misc]

    def init_trainers(self) -> dict[str, TrainTask]:
        return {name: config.trainer() for name, config in self.models.items()}  # type: ignore[misc]

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random()}

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(
                status_code=404, detail=f"unknown model {model!r}; this server has {sorted(self._infers)}."
            )
        image = request.get("image")
        if isinstance(image, str):
            if not image:
                raise HTTPException(status_code=400, detail="no image: pass image=<datastore id> or upload a file.")
            if not os.path.exists(image) and not (datastore or self.datastore()).get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"unknown image {image!r}: not in the datastore.")
        try:
            return super().infer(request, datastore)
        except PAMRequestError as error:
            raise HTTPException(status_code=error.status_code, detail=error.message) from None
