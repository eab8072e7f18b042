"""The PAM operator: one prompt (a box on a slice, a 3D box or a mask on one slice) -> a 3D segmentation.

The networks come from the MONAI bundle: ``configs/inference.json`` is read with ``monai.bundle.ConfigParser``
(``network`` / ``box2mask_network`` = ``network_def`` / ``box2mask_def`` with ``ckpt_path`` /
``box2mask_ckpt_path`` loaded, and ``inferer``, the bundle's ``PropagationInferer``), so the app runs exactly the
bundle's inference; :class:`pam_monai.predictor.PAMPredictor` drives them.

This module also resolves what a run needs before the graph starts (:func:`prepare_prompt`, :func:`resolve_models`)
so that a bad prompt or missing weights stop the app before any image is read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.core import ConditionType, Fragment, Image, Operator, OperatorSpec

from .common import NoObjectError, PAMInputError, RunState, Stopwatch, guarded

__all__ = ["ModelFiles", "PAMOperator", "PreparedPrompt", "prepare_prompt", "resolve_models"]

_LOG = logging.getLogger("pam.deploy")
PROMPT_FILE = "prompt.json"
PROPMASK_FILE = "model.pt"
BOX2MASK_FILE = "box2mask.pt"


# ---------------------------------------------------------------------------------------------------------------
# what a run needs, resolved before the graph starts
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedPrompt:
    """A checked prompt: ``args`` for ``PAMPredictor.segment`` (without the mask), the mask prompt if any."""

    spec: dict[str, Any]
    args: dict[str, Any]
    origin: str
    mask: Any = None  # MetaTensor (X, Y, Z) of a mask prompt, on the image grid
    mask_path: Path | None = None
    labels: list[int] = field(default_factory=list)

    @property
    def axis(self) -> int:
        return int(self.args.get("axis", 2))


def _read_prompt_text(value: str, base: Path) -> tuple[dict[str, Any], Path, str]:
    """``(spec, folder that relative paths start from, where it came from)`` for JSON text or a JSON file path."""
    from pam_monai.prompts.core import PromptError

    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text), base, "inline JSON"
        except json.JSONDecodeError as error:
            raise PromptError(f"the prompt is not valid JSON: {error.msg} at character {error.pos}.") from None
    path = Path(text).expanduser()
    if not path.is_file():
        raise PromptError(f"{path}: no such prompt file.")
    try:
        return json.loads(path.read_text()), path.resolve().parent, str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PromptError(f"{path}: not valid JSON ({error}).") from None


def prepare_prompt(cli_value: str | None, input_path: Path) -> PreparedPrompt:
    """Find and check the prompt: ``--prompt`` (JSON text or file), else ``$PAM_PROMPT``, else ``INPUT/prompt.json``.

    A mask prompt ``{"mask": "mask.nii.gz"}`` names a label image on the image grid; a relative path starts from
    the prompt file's folder (inline JSON: the input folder, then the current folder).

    Raises:
        PromptError: no prompt, invalid JSON, unknown fields, or a mask prompt that is empty / on several slices.
    """
    from pam_monai.data.io import load_image
    from pam_monai.prompts.core import PromptError, mask_prompts_from_volume
    from pam_monai.prompts.parse import parse_prompt

    input_dir = input_path if input_path.is_dir() else input_path.parent
    if cli_value:
        spec, base, origin = _read_prompt_text(cli_value, input_dir)
    elif os.environ.get("PAM_PROMPT", "").strip():
        spec, base, origin = _read_prompt_text(os.environ["PAM_PROMPT"], input_dir)
        origin = f"PAM_PROMPT ({origin})"
    elif input_path.is_dir() and (input_path / PROMPT_FILE).is_file():
        spec, base, origin = _read_prompt_text(str(input_path / PROMPT_FILE), input_dir)
    else:
        raise PromptError(
            f"no prompt: pass --prompt PROMPT.json (or JSON text), set PAM_PROMPT, or put {PROMPT_FILE} in the "
            'input folder, e.g. {"box": [i0, j0, i1, j1], "slice": k, "axis": 2}.'
        )
    if not isinstance(spec, Mapping):
        raise PromptError('the prompt JSON must be an object such as {"box": [i0, j0, i1, j1], "slice": k}.')
    try:
        args = parse_prompt(dict(spec))
    except (TypeError, ValueError) as error:
        if isinstance(error, PromptError):
            raise
        raise PromptError(f"the prompt's values must be integers: {error}.") from None
    prepared = PreparedPrompt(spec=dict(spec), args=args, origin=origin)
    mask_name = args.pop("mask_prompt_path", None)
    if mask_name is not None:
        candidates = [Path(mask_name)] if Path(mask_name).is_absolute() else [base / mask_name, Path(mask_name)]
        mask_path = next((p for p in candidates if p.is_file()), None)
        if mask_path is None:
            raise PromptError(f"mask prompt {mask_name}: no such file (looked in {base}).")
        mask = load_image(mask_path)
        if mask.ndim == 4 and mask.shape[0] == 1:
            mask = mask[0]
        prompts = mask_prompts_from_volume(mask.as_tensor(), prepared.axis)  # empty / several slices -> PromptError
        prepared.mask, prepared.mask_path = mask, mask_path.resolve()
        prepared.labels = sorted({p.label for p in prompts})
    else:
        prepared.labels = [int(args.get("label", 1))]
    if any(v < 1 or v > 255 for v in prepared.labels):
        raise PromptError(f"object labels must be 1..255, got {prepared.labels}.")
    return prepared


@dataclass(frozen=True)
class ModelFiles:
    """The bundle config and the weights a run uses."""

    bundle_root: Path
    config: Path
    propmask: Path
    box2mask: Path | None


def _weights_folder(path: Path) -> Path | None:
    """The folder holding ``model.pt``: ``path``, ``path/models`` (a bundle) or its single model subfolder (a MAP)."""
    if path.is_file():
        return path.parent
    for folder in (path, path / "models"):
        if (folder / PROPMASK_FILE).is_file():
            return folder
    subfolders = [p for p in sorted(path.glob("*/")) if (p / PROPMASK_FILE).is_file()] if path.is_dir() else []
    return subfolders[0] if len(subfolders) == 1 else None


def resolve_models(model_path: str | os.PathLike | None, bundle_candidates: list[Path]) -> ModelFiles:
    """Pick the bundle config and the weights.

    Bundle (``configs/inference.json``): ``$PAM_BUNDLE_ROOT``, else the first of ``bundle_candidates`` that has one.
    Weights: the model path when one was given (``-m`` / ``$HOLOSCAN_MODEL_PATH``: ``model.pt`` itself, a folder
    with ``model.pt`` and ``box2mask.pt``, a bundle, or a folder with one such subfolder, as a MAP's model folder
    is), else ``$PAM_MONAI_MODELS``, else the bundle's ``models/``. Box2Mask weights are optional (mask prompts).

    Raises:
        CheckpointError: no bundle config or no PropMask weights, saying where they were looked for.
    """
    from pam_monai.networks.checkpoint import CheckpointError

    roots = [Path(os.environ["PAM_BUNDLE_ROOT"])] if os.environ.get("PAM_BUNDLE_ROOT") else list(bundle_candidates)
    bundle_root = next((r for r in roots if (r / "configs" / "inference.json").is_file()), None)
    if bundle_root is None:
        raise CheckpointError(
            f"no MONAI bundle config (configs/inference.json) in {', '.join(map(str, roots))}; set PAM_BUNDLE_ROOT."
        )
    looked: list[str] = []
    propmask: Path | None = None
    sources = [model_path] if model_path else [os.environ.get("PAM_MONAI_MODELS"), bundle_root / "models"]
    for source in sources:
        if not source:
            continue
        source = Path(source)
        looked.append(str(source))
        folder = _weights_folder(source) if source.exists() else None
        if folder is not None:
            propmask = source if source.is_file() else folder / PROPMASK_FILE
            break
    if propmask is None:
        raise CheckpointError(
            f"no PropMask weights ({PROPMASK_FILE}) found in {', '.join(looked) or 'any model folder'}: this install "
            "has no trained default model yet; pass -m FOLDER with model.pt and box2mask.pt (or set PAM_MONAI_MODELS)."
        )
    box2mask = propmask.parent / BOX2MASK_FILE
    return ModelFiles(
        bundle_root=bundle_root.resolve(),
        config=(bundle_root / "configs" / "inference.json").resolve(),
        propmask=propmask.resolve(),
        box2mask=box2mask.resolve() if box2mask.is_file() else None,
    )


def build_predictor(models: ModelFiles, device: str = "cpu"):  # noqa: ANN201 - PAMPredictor, imported late
    """The bundle's networks and inferer (``configs/inference.json`` via ``ConfigParser``) in a ``PAMPredictor``."""
    import torch
    from monai.bundle import ConfigParser

    from pam_monai.networks.checkpoint import CheckpointError
    from pam_monai.predictor import PAMPredictor
    from pam_monai.workflows.errors import causes

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("PAM_DEVICE asks for cuda but no CUDA GPU is available here.")
    parser = ConfigParser()
    parser.read_config(str(models.config))
    parser["bundle_root"] = str(models.bundle_root)
    parser["ckpt_path"] = str(models.propmask)
    parser["box2mask_ckpt_path"] = str(models.box2mask or "")
    parser["device"] = f"$torch.device('{device}')"
    parser["inferer"]["progress"] = False
    try:
        network = parser.get_parsed_content("network")
        box2mask = parser.get_parsed_content("box2mask_network") if models.box2mask else None
        if box2mask is None:
            parser["inferer"]["box2mask_network"] = None
        inferer = parser.get_parsed_content("inferer")
    except (Exception, SystemExit) as error:  # the config stops bad input with SystemExit for the bundle's CLI
        cause = next((link for link in causes(error) if isinstance(link, CheckpointError)), None)
        if cause is not None:
            raise CheckpointError(str(cause)) from error
        raise
    return PAMPredictor(propmask=network, box2mask=box2mask, inferer=inferer, device=device)


# ---------------------------------------------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------------------------------------------


class PAMOperator(Operator):
    """Segment the prompted object(s) in the input volume with PAM.

    Named input:
        image: ``Image`` from one of the input operators (``(X, Y, Z)`` array, ``pam_affine_ras``).
    Named outputs (nothing is emitted on an input error, or when PAM finds no object):
        seg_image: ``Image`` ``(slices, rows, columns)`` uint8 with segment numbers 1..N, in the DICOM series'
            instance order, for ``DICOMSegmentationWriterOperator`` (DICOM input only).
        result: dict with ``labels`` (``(X, Y, Z)`` object label values), ``affine_ras``, ``report``, ``source``.
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        prompt: PreparedPrompt,
        models: ModelFiles,
        state: RunState,
        device: str = "cpu",
        **kwargs,
    ) -> None:
        self.prompt, self.models, self.state, self.device = prompt, models, state, device
        self._predictor = None
        self.input_name_image = "image"
        self.output_name_seg = "seg_image"
        self.output_name_result = "result"
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.input_name_image)
        spec.output(self.output_name_seg).condition(ConditionType.NONE)
        spec.output(self.output_name_result).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):  # noqa: ANN001
        image = op_input.receive(self.input_name_image)
        if image is None or self.state.failed:
            return
        outputs = guarded(self.state, "segmenting", self.segment, image)
        if outputs is None:
            return
        result, seg_image = outputs
        if seg_image is not None:
            op_output.emit(seg_image, self.output_name_seg)
        op_output.emit(result, self.output_name_result)

    def predictor(self):  # noqa: ANN201
        if self._predictor is None:
            with Stopwatch(self.state, "load_models"):
                self._predictor = build_predictor(self.models, self.device)
        return self._predictor

    def segment(self, image: Image) -> tuple[dict[str, Any], Image | None]:
        """Run PAM on ``image``: ``(result dict, SEG image or None)``."""
        import torch
        from monai.data import MetaTensor

        from pam_monai.prompts.core import PromptError

        metadata = image.metadata()
        affine = np.asarray(metadata["pam_affine_ras"], dtype=np.float64)
        volume = MetaTensor(
            torch.as_tensor(np.asarray(image.asnumpy(), dtype=np.float32)), affine=torch.as_tensor(affine)
        )
        predictor = self.predictor()
        try:
            predictor.set_image(volume)
        except ValueError as error:
            raise PAMInputError(str(error)) from None
        args = dict(self.prompt.args)
        if self.prompt.mask is not None:
            mask = self.prompt.mask
            if tuple(mask.shape) != tuple(volume.shape) or not np.allclose(
                np.asarray(mask.affine, dtype=np.float64), affine, atol=1e-2
            ):
                raise PromptError(
                    f"{self.prompt.mask_path}: the mask prompt's grid (shape {tuple(mask.shape)}) differs from the "
                    f"image's (shape {tuple(volume.shape)}) or its affine differs; draw it on this image."
                )
            args["mask_prompt"] = mask.as_tensor()
        axis = self.prompt.axis
        result = predictor.segment(**args)
        labels = result.labels.numpy()
        if not labels.any():
            raise NoObjectError("the model found no object for this prompt; nothing was written.")
        report = predictor.report(result, axis=axis)
        report["seconds"].update(self.state.seconds)
        values = [v for v in self.prompt.labels if (labels == v).any()]
        numbers = {v: n for n, v in enumerate(self.prompt.labels, 1)}  # SEG segment number of each label
        for obj in report["objects"]:
            obj["segment_number"] = numbers.get(obj["label"])
        report["prompt"] = {"source": self.prompt.origin, **self.prompt.spec}
        report["input"] = metadata.get("pam_input", {})
        result_dict = {"labels": labels, "affine_ras": affine, "report": report, "source": metadata["pam_source"]}
        seg_image = None
        if metadata["pam_source"] == "dicom":
            segments = np.zeros(labels.shape, dtype=np.uint8)
            for value in values:
                segments[labels == value] = numbers[value]
            seg_image = Image(
                np.ascontiguousarray(segments.transpose(2, 1, 0)), {"pam_geometry": metadata["pam_geometry"]}
            )
        return result_dict, seg_image
