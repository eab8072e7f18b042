"""PAM inference for MONAI Label: the repository's bundle, prompted from the request.

The task reads the bundle's ``configs/inference.json`` (its ``preprocessing`` and its ``inferer``, a
:class:`~pam_monai.inferers.PropagationInferer`) and its ``metadata.json``; the prompt, which the bundle reads from
a file, comes from the MONAI Label request instead (:mod:`pam_monai.prompts.request`, sessions in
:mod:`lib.sessions`). The weights are the newest of
``<model_dir>/model.pt`` (written by training through MONAI Label) and the bundle's ``models/model.pt``; Box2Mask
weights likewise (``box2mask.pt``). Networks are built with
:func:`~pam_monai.networks.build_network_from_checkpoint`, so weights of either width (``paper`` or ``light``) and
either file format work, and they are reloaded when the file changes (e.g. after training).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import SaveImaged

from lib.compat import import_monailabel_without_torchvision

import_monailabel_without_torchvision()

from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402
from monailabel.tasks.infer.basic_infer import BasicInferTask  # noqa: E402
from monailabel.tasks.infer.bundle import BundleConstants, BundleInferTask  # noqa: E402
from monailabel.utils.others.generic import device_list, file_ext  # noqa: E402

from lib.sessions import ClickSessions, SessionOutcome  # noqa: E402
from pam_monai.data.io import save_label_image, voxel_volume_ml  # noqa: E402
from pam_monai.errors import ImageError, InputError, PromptError  # noqa: E402
from pam_monai.networks.checkpoint import CheckpointError, build_network_from_checkpoint  # noqa: E402
from pam_monai.predictor import PAMPredictor  # noqa: E402
from pam_monai.prompts.core import read_mask_prompt  # noqa: E402
from pam_monai.prompts.request import RequestPrompt, read_request  # noqa: E402
from pam_monai.transforms.prompt import LoadPromptd  # noqa: E402
from pam_monai.workflows import SavePropagationResultsd  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["PAMInferTask", "PAMRequestError", "UPLOADED_LABEL_KEY", "WEIGHT_FILES"]

UPLOADED_LABEL_KEY = "pam_uploaded_label"
"""Request key holding the path of the label file uploaded with the request. The app's endpoint wrapper (main.py)
sets it, after removing any value a client sent; nothing else in a request is ever opened as a file."""

WEIGHT_FILES = {"propmask": "model.pt", "box2mask": "box2mask.pt"}
PROMPT_TYPES = {
    "roi": "[i0, i1, j0, j1, k0, k1] as 3D Slicer's ROI tool sends it (a min/max voxel pair per axis, either order): "
    "one slice thin along an axis = a box on that slice along that axis, else a 3D box; [] = none",
    "foreground": "[[i, j, k], ...] clicks inside the object (3D Slicer re-sends them all): the slice of the first "
    "one is grown into the first mask (unless roi or label is given); every other clicked slice is a correction",
    "background": "[[i, j, k], ...] clicks outside the object: they correct the result on their slice",
    "label": "multipart file: a label image on the image grid, painted on any slices (values 1..N = N objects; with "
    "label_info, the segment named by selected_label_name); a 'label' parameter is a segment name, never a path",
    "axis": "array axis normal to the prompt slices: 0, 1 or 2 (default 2; a flat roi brings its own)",
    "thickness_mm": "neighbourhood predicted per round on each side (default 20)",
}


class PAMRequestError(Exception):
    """An infer request the server answers with ``status_code`` and ``message`` (the app maps it to HTTP)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class PAMInferTask(BundleInferTask):
    """Prompted 3D propagation with the PAM bundle.

    Args:
        bundle_path: the bundle folder (``configs/inference.json``, ``configs/metadata.json``, ``models/``).
        conf: the app's ``--conf`` options (``preload``).
        model_dir: where trained weights go (``model.pt`` / ``box2mask.pt``); they win over the bundle's.
        label_name: the name of object 1 (objects 2..N of a multi-label prompt are ``<name>_<n>``).
        concurrency: propagations run at the same time (the rest wait).
        scribbles: list the task as a ``scribbles`` model, so that 3D Slicer's MONAI Label module offers it in its
            Scribbles section, the one with the ROI tool (the ``deepgrow`` kind gets the point tools).
    """

    def __init__(
        self,
        bundle_path: str,
        conf: dict[str, str],
        model_dir: str,
        label_name: str = "object",
        concurrency: int = 2,
        scribbles: bool = False,
    ) -> None:
        # BundleInferTask.__init__ insists on <bundle>/models/model.pt; the weights here may live in model_dir
        # or be missing (the task then answers 503 with the reason), so the bundle is read here instead.
        self.valid = False
        self.const = BundleConstants()
        self.pre_filter = [LoadPromptd]  # the prompt comes from the request, not from a file named in the config
        self.post_filter = [SaveImaged, SavePropagationResultsd]  # MONAI Label writes the result itself
        self.extend_load_image = True
        self.dropout = 0.0
        self.add_post_restore = True
        self.bundle_path = bundle_path
        self.model_dir = model_dir
        self.bundle_config_path = os.path.join(bundle_path, "configs", "inference.json")
        self.bundle_config = self._load_bundle_config(bundle_path, self.bundle_config_path)
        # Nothing may load weights from the config: PAM's networks come from _network() below.
        self.bundle_config["network"] = None
        self.bundle_config["box2mask_network"] = None
        self.bundle_config["inferer#box2mask_network"] = None
        self.bundle_config["inferer#progress"] = False
        with open(os.path.join(bundle_path, "configs", self.const.metadata_json())) as fp:
            metadata = json.load(fp)
        self.key_image = next(iter(metadata["network_data_format"]["inputs"]))
        self.key_pred = next(iter(metadata["network_data_format"]["outputs"]))
        self.label_name = label_name

        BasicInferTask.__init__(
            self,
            # The last existing path wins: trained weights in model_dir over the bundle's default.
            path=[self._bundle_weights("propmask"), self._app_weights("propmask")],
            network=None,
            type=InferType.SCRIBBLES if scribbles else InferType.DEEPGROW,
            labels={label_name: 1},
            dimension=3,
            description=metadata.get("description", "PAM"),
            input_key=self.key_image,
            output_label_key=self.key_pred,
            config={
                "axis": [2, 0, 1],
                "thickness_mm": float(self.bundle_config.get("thickness_mm", 20.0)),
            },
            preload=False,
        )
        self._config["device"] = device_list()
        self.version = metadata.get("version")
        self._lock = threading.Lock()
        self._parse_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, int(concurrency)))
        self._nets: dict[tuple[str, str], tuple[tuple[str, int], torch.nn.Module]] = {}
        self._cached: dict[str, Any] = {}
        self._sessions = ClickSessions()
        self.valid = True
        if str(conf.get("preload", "false")).lower() in ("1", "true", "yes"):
            for kind in WEIGHT_FILES:
                if self._weights(kind, required=False):
                    self._network(kind, "cpu")

    # ------------------------------------------------------------------------------------------------- weights
    def _bundle_weights(self, kind: str) -> str:
        return os.path.join(self.bundle_path, "models", WEIGHT_FILES[kind])

    def _app_weights(self, kind: str) -> str:
        return os.path.join(self.model_dir, WEIGHT_FILES[kind])

    def _weights(self, kind: str, required: bool = True) -> str | None:
        for path in (self._app_weights(kind), self._bundle_weights(kind)):
            if os.path.isfile(path):
                return path
        if not required:
            return None
        what = "PropMask" if kind == "propmask" else "Box2Mask (needed for box prompts)"
        bundle_models = os.path.dirname(self._bundle_weights(kind))
        raise PAMRequestError(
            503,
            f"no {what} weights: put {WEIGHT_FILES[kind]} into {self.model_dir} or {bundle_models}, "
            "or train the model (POST /train/pam).",
        )

    def _network(self, kind: str, device: str) -> torch.nn.Module:
        path = self._weights(kind)
        assert path is not None
        stamp = (path, os.stat(path).st_mtime_ns)
        key = (kind, str(device))
        with self._lock:
            cached = self._nets.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                network = build_network_from_checkpoint(path, kind=kind).to(torch.device(device)).eval()
            except CheckpointError as error:
                raise PAMRequestError(503, f"cannot load the {kind} weights: {error}") from None
            logger.info(f"PAM: loaded {kind} weights from {path}")
            self._nets[key] = (stamp, network)
            return network

    def _get_network(self, device: str, data: Any) -> torch.nn.Module:
        return self._network("propmask", device)

    def is_valid(self) -> bool:
        # Listed even without weights: requests then get a 503 that says where to put them.
        return self.valid

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["prompts"] = PROMPT_TYPES
        info["bundle"] = self.bundle_path
        info["weights"] = {kind: self._weights(kind, required=False) for kind in WEIGHT_FILES}
        return info

    # -------------------------------------------------------------------------------------- transforms, inferer
    def _once(self, name: str, build: Any) -> Any:
        """Parse a bundle component once (ConfigParser is not thread-safe; the results are stateless)."""
        with self._parse_lock:
            if name not in self._cached:
                self._cached[name] = build()
            return self._cached[name]

    def pre_transforms(self, data: Any = None) -> list[Any]:
        return list(self._once("pre", lambda: super(PAMInferTask, self).pre_transforms(data)))

    def post_transforms(self, data: Any = None) -> list[Any]:
        return list(self._once("post", lambda: super(PAMInferTask, self).post_transforms(data)))

    def inferer(self, data: Any = None) -> Inferer:
        return self._once("inferer", lambda: super(PAMInferTask, self).inferer(data))

    # ------------------------------------------------------------------------------------------------ inference
    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict[str, Any]:
        started = time.perf_counter()
        image = data[self.input_key]
        if not isinstance(image, MetaTensor):
            image = MetaTensor(torch.as_tensor(image))
        array = image.as_tensor()
        while array.ndim > 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 3:
            raise PAMRequestError(422, f"PAM needs a 3D single-channel image, got shape {tuple(image.shape)}.")
        volume = array.cpu().numpy()
        try:
            prompt = read_request(data, volume.shape, uploaded_label=self._uploaded_label(data, image))
        except PromptError as error:
            raise PAMRequestError(400, str(error)) from None
        inferer = self.inferer(data)
        thickness = _number(data.get("thickness_mm"), None)
        base = prompt.base or {}
        box2mask = self._network("box2mask", device) if ("box" in base or "box3d" in base) else None
        predictor = PAMPredictor(propmask=self._network("propmask", device), box2mask=box2mask, inferer=inferer)

        with self._slots:
            waited = time.perf_counter() - started
            try:
                predictor.set_image(image)
                outcome = self._sessions.run(prompt, data.get("image_path") or "", predictor, thickness)
            except ImageError as error:  # an image PAM cannot use (NaN intensities, a flat volume, ...)
                raise PAMRequestError(422, str(error)) from None
            except InputError as error:  # a prompt or correction that does not fit
                raise PAMRequestError(400, str(error)) from None
            except ValueError as error:
                raise PAMRequestError(422, str(error)) from None

        labels = torch.as_tensor(outcome.labels).to(torch.int16)
        data[self.output_label_key] = MetaTensor(labels[None], meta=dict(image.meta))
        data[self.output_json_key] = self._report(outcome, image, prompt, waited, time.perf_counter() - started)
        return data

    def _uploaded_label(self, data: dict[str, Any], image: MetaTensor) -> np.ndarray | None:
        """The label image uploaded with this request (never a path named in the request's parameters)."""
        path = data.get(UPLOADED_LABEL_KEY)
        if not isinstance(path, str) or not path:
            return None
        try:
            label = read_mask_prompt(path, tuple(int(s) for s in image.shape[-3:]), np.asarray(image.affine))
        except PromptError:
            raise
        except Exception as error:  # readers raise many types; the user needs the reason on one line
            raise PromptError(f"cannot read the uploaded label image ({' '.join(str(error).split())[:200]}).") from None
        return np.asarray(label)

    def _report(
        self,
        outcome: SessionOutcome,
        image: MetaTensor,
        prompt: RequestPrompt,
        waited: float,
        seconds: float,
    ) -> dict[str, Any]:
        labels = np.asarray(outcome.labels)
        voxel_ml = voxel_volume_ml(image.affine)
        others = tuple(a for a in range(3) if a != prompt.axis)
        objects = []
        values = sorted(set(outcome.prompt_slices) | {int(v) for v in np.unique(labels) if v > 0})
        for value in values:
            voxels = int((labels == value).sum())
            covered = np.nonzero((labels == value).any(axis=others))[0]
            objects.append(
                {
                    "label": int(value),
                    "name": self.label_name if value == 1 else f"{self.label_name}_{value}",
                    "voxels": voxels,
                    "volume_ml": round(voxels * voxel_ml, 4),
                    "prompt_slices": [int(s) for s in outcome.prompt_slices.get(value, [])],
                    "slices": [int(covered[0]), int(covered[-1])] if len(covered) else None,
                }
            )
        return {
            "model": "pam",
            "prompt": prompt.description,
            "session": outcome.info,
            "objects": objects,
            "label_name": objects[0]["name"] if objects else self.label_name,
            "volume_ml": round(sum(o["volume_ml"] for o in objects), 4),
            "image_shape": [int(s) for s in labels.shape],
            "rounds": outcome.rounds,
            "slices_predicted": outcome.slices_predicted,
            "timing": {
                **{k: round(v, 4) for k, v in outcome.seconds.items()},
                "queued": round(waited, 4),
                "total": round(seconds, 4),
            },
        }

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """NIfTI results are written with the image's exact affine (MONAI Label's writer drops a shear)."""
        ext = extension or data.get("result_extension") or file_ext(str(data.get("image_path") or ""))
        pred = data.get(self.output_label_key)
        image = data.get(self.input_key)
        if ext not in (".nii", ".nii.gz") or not isinstance(image, MetaTensor) or pred is None:
            return super().writer(data, extension, dtype)
        labels = torch.as_tensor(pred)
        while labels.ndim > 3 and labels.shape[0] == 1:
            labels = labels[0]
        affine = image.meta.get("original_affine")
        affine = image.affine if affine is None else affine
        handle, path = tempfile.mkstemp(suffix=ext)
        os.close(handle)
        save_label_image(labels.cpu().numpy(), np.asarray(affine, dtype=np.float64), path)
        return path, data.get(self.output_json_key, {})


def _number(value: Any, default: float | None) -> float | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PAMRequestError(400, f"thickness_mm must be a number, got {value!r}.") from None
    if not np.isfinite(number) or number <= 0:
        raise PAMRequestError(400, f"thickness_mm must be a positive number, got {value!r}.")
    return number
