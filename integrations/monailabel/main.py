"""MONAI Label app serving PAM: a box, clicks or painted slices -> a full 3D segmentation, corrected by clicks.

Start it with::

    monailabel start_server --app integrations/monailabel --studies <folder of images> --conf models pam

See ``integrations/monailabel/README.md`` for the prompts, the ``--conf`` options, 3D Slicer / OHIF and training.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any

try:
    import pam_monai  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lib.compat import import_monailabel_without_torchvision

import_monailabel_without_torchvision()

from fastapi import HTTPException  # noqa: E402
from lib.configs.pam import PAMConfig  # noqa: E402
from lib.infers.pam import UPLOADED_LABEL_KEY, PAMRequestError  # noqa: E402
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


def _take_label_uploads() -> None:
    """Save a label uploaded with an infer request ourselves, under a key no client can set.

    MONAI Label's endpoint stores an uploaded label's path in ``request["label"]`` and then merges the ``params``
    JSON over it, where 3D Slicer puts the segment *name* (and any client could put a server path). The wrapper
    writes the upload to a temporary file of its own, passes its path as ``pam_uploaded_label`` (a value a client
    sent under that key is dropped) and leaves ``label`` to the parameters: the app opens only that file.
    """
    try:
        from monailabel.endpoints import infer as endpoint
    except ImportError:  # not inside a server
        return
    original = endpoint.run_inference
    if getattr(original, "pam_takes_label_uploads", False):
        return

    def run_inference(
        background_tasks: Any,
        model: str,
        image: str = "",
        session_id: str = "",
        params: str = "{}",
        file: Any = None,
        label: Any = None,
        output: Any = None,
    ) -> Any:
        try:
            parsed = json.loads(params) if params else {}
        except json.JSONDecodeError:
            parsed = None  # the endpoint raises it again: answered 400 by the handler above
        if isinstance(parsed, dict):
            parsed.pop(UPLOADED_LABEL_KEY, None)
            if label is not None:
                suffix = "".join(pathlib.Path(label.filename or "label.nii.gz").suffixes) or ".nii.gz"
                handle, path = tempfile.mkstemp(suffix=suffix, prefix="pam_label_")
                with os.fdopen(handle, "wb") as out:
                    shutil.copyfileobj(label.file, out)
                background_tasks.add_task(_remove, path)
                parsed[UPLOADED_LABEL_KEY] = path
                label = None
            params = json.dumps(parsed)
        return original(background_tasks, model, image, session_id, params, file, label, output)

    run_inference.pam_takes_label_uploads = True  # type: ignore[attr-defined]
    endpoint.run_inference = run_inference


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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
            description="Box (roi), clicks or painted slices; PAM propagates them through the volume, clicks correct.",
            version="0.1.0",
        )
        _install_json_error_handler()
        _take_label_uploads()

    def init_infers(self) -> dict[str, InferTask]:
        # <name>_roi: the same model listed as a scribbles method, where 3D Slicer's module has its ROI tool.
        infers: dict[str, InferTask] = {}
        for name, config in self.models.items():
            infers[name] = config.infer()  # type: ignore[attr-defined]
            infers[f"{name}_roi"] = config.infer(scribbles=True)  # type: ignore[attr-defined]
        return infers

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
