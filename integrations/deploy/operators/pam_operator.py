"""The PAM operator: a prompt (boxes, a 3D box, a mask on one or several slices) -> a 3D segmentation.

The networks come from the MONAI bundle: ``configs/inference.json`` is read with ``monai.bundle.ConfigParser``
(``network`` / ``box2mask_network`` = ``network_def`` / ``box2mask_def`` with ``ckpt_path`` /
``box2mask_ckpt_path`` loaded, and ``inferer``, the bundle's ``PropagationInferer``), so the app runs exactly the
bundle's inference; :class:`pam_monai.predictor.PAMPredictor` drives them.

This module also resolves what a run needs before the graph starts (:func:`prepare_prompt`, :func:`resolve_models`)
so that a bad prompt or missing weights stop the app before any image is read.
"""

from __future__ import annotations

import logging
import os
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
    """A prompt checked by the shared parser (:func:`pam_monai.prompts.parse.parse_prompt`) before any image is read.

    ``args`` are the parser's keywords with the files they name (``mask_prompt_path``, ``previous_path``) made
    absolute; :func:`pam_monai.prompts.parse.load_prompt_files` reads those onto the image's grid once the image is
    known. ``labels`` are the objects the result will hold (one DICOM SEG segment each).
    """

    args: dict[str, Any]
    origin: str
    labels: list[int] = field(default_factory=list)

    @property
    def axis(self) -> int:
        return int(self.args.get("axis", 2))

    @property
    def files(self) -> list[Path]:
        """The files the prompt names (a mask prompt, a previous result, a 3D Slicer ROI)."""
        return [Path(self.args[key]) for key in PROMPT_FILE_KEYS if key in self.args]

    def summary(self) -> dict[str, Any]:
        """The prompt as the report shows it (JSON types)."""

        def plain(value: Any) -> Any:
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)

        return {"source": self.origin, **{key: plain(value) for key, value in self.args.items()}}


#: the prompt's keywords that name files, relative to the prompt file's folder (inline JSON: the input folder)
PROMPT_FILE_KEYS = ("mask_prompt_path", "previous_path", "roi_path")
#: those that name label images (their label values are objects of the result)
LABEL_IMAGE_KEYS = ("mask_prompt_path", "previous_path")


def _label_values(path: Path) -> set[int]:
    from pam_monai.data.io import load_image

    values = np.unique(np.asarray(load_image(path).as_tensor()).round().astype(np.int64))
    return {int(v) for v in values if v > 0}


def prepare_prompt(cli_value: str | None, input_path: Path) -> PreparedPrompt:
    """Find the prompt and check it with the shared parser: ``--prompt`` (JSON text or a file), else ``$PAM_PROMPT``,
    else ``INPUT/prompt.json``.

    Every prompt form of :func:`pam_monai.prompts.parse.parse_prompt` is accepted: a mask on any number of slices,
    a box on one slice or on several (``boxes``), a 3D box, a 3D Slicer ROI markup (``.mrk.json``), and a previous
    result with corrections (``previous`` + ``mask`` / boxes / ``clicks``), run by
    :meth:`pam_monai.predictor.PAMPredictor.prompt`. Files the prompt names are looked up from the prompt file's
    folder (inline JSON: the input folder), then the current folder.

    Raises:
        PromptError: no prompt, invalid JSON, unknown fields, a missing file, or no object in the prompt.
    """
    from pam_monai.errors import PromptError
    from pam_monai.prompts.parse import parse_prompt

    input_dir = input_path if input_path.is_dir() else input_path.parent
    if cli_value and cli_value.strip():
        value, origin = cli_value.strip(), None
    elif os.environ.get("PAM_PROMPT", "").strip():
        value, origin = os.environ["PAM_PROMPT"].strip(), "PAM_PROMPT"
    elif input_path.is_dir() and (input_path / PROMPT_FILE).is_file():
        value, origin = str(input_path / PROMPT_FILE), None
    else:
        raise PromptError(
            f"no prompt: pass --prompt PROMPT.json (or JSON text), set PAM_PROMPT, or put {PROMPT_FILE} in the "
            'input folder, e.g. {"box": [i0, j0, i1, j1], "slice": k, "axis": 2}.'
        )
    inline = value.startswith("{")
    if not inline and not Path(value).expanduser().exists():
        raise PromptError(f"{value}: no such prompt file.")
    where = "inline JSON" if inline else str(Path(value).expanduser())
    origin = f"{origin} ({where})" if origin else where
    base = input_dir if inline else Path(value).expanduser().resolve().parent
    args = parse_prompt(value if inline else str(Path(value).expanduser()))
    for key in PROMPT_FILE_KEYS:
        if key in args:
            name = Path(args[key]).expanduser()
            candidates = [name] if name.is_absolute() else [base / name, name]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                what = {"previous_path": "previous result", "roi_path": "ROI markup"}.get(key, "mask prompt")
                raise PromptError(f"{what} {args[key]}: no such file (looked in {base}).")
            args[key] = str(found.resolve())
    labels: set[int] = set()
    for path in (Path(args[key]) for key in LABEL_IMAGE_KEYS if key in args):
        labels |= _label_values(path)
    if any(key in args for key in ("box", "boxes", "box3d", "clicks", "roi_path")):
        labels.add(int(args.get("label", 1)))
    if not labels:
        raise PromptError("the prompt marks no object: its mask prompt is empty.")
    if any(v < 1 or v > 255 for v in labels):
        raise PromptError(f"object labels must be 1..255, got {sorted(labels)}.")
    return PreparedPrompt(args=args, origin=origin, labels=sorted(labels))


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
    from pam_monai.errors import CheckpointError

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

    from pam_monai.errors import CheckpointError
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

        from pam_monai.prompts.parse import load_prompt_files

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
        roi = args.pop("roi_path", None)
        args = load_prompt_files(args, tuple(volume.shape), affine)
        if roi is not None:  # a 3D Slicer ROI: a box (3D, or 2D when one slice thin) on this image's grid
            args.update(predictor.roi_prompt(roi))
        axis = int(args.get("axis", 2))
        result = predictor.prompt(args)
        labels = result.labels.numpy()
        if not labels.any():
            raise NoObjectError("the model found no object for this prompt; nothing was written.")
        report = predictor.report(result, axis=axis)
        report["seconds"].update(self.state.seconds)
        values = [v for v in self.prompt.labels if (labels == v).any()]
        numbers = {v: n for n, v in enumerate(self.prompt.labels, 1)}  # SEG segment number of each label
        for obj in report["objects"]:
            obj["segment_number"] = numbers.get(obj["label"])
        report["prompt"] = self.prompt.summary()
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
