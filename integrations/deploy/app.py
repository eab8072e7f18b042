"""PAM as a MONAI Deploy application: a DICOM series (or a NIfTI volume) + one prompt -> DICOM SEG, NIfTI, STL, JSON.

    python integrations/deploy/app.py -i INPUT -o OUTPUT [-m MODELS] [--prompt PROMPT.json | --prompt '{"box": ...}']

``INPUT`` is a folder of DICOM files (one CT / MR / PET series is selected) or a NIfTI file (or a folder holding one).
The prompt comes from ``--prompt``, else ``$PAM_PROMPT``, else ``INPUT/prompt.json``. Inside a MAP the SDK's
variables apply (``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH``, ``HOLOSCAN_MODEL_PATH``). See README.md.

Exit codes: 0 done; 2 bad input (prompt, series geometry, missing weights) with one line ``pam-deploy: error: ...``
on stderr; 1 failure (no object found, unexpected error). Outputs appear only when the whole run succeeded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "WARN")  # Holoscan's own [info] lines only with HOLOSCAN_LOG_LEVEL=INFO

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:  # `operators` is this folder's package (in a MAP too, where the app is a folder)
    sys.path.insert(0, str(APP_DIR))

from monai.deploy.conditions import CountCondition  # noqa: E402
from monai.deploy.core import Application  # noqa: E402
from monai.deploy.core.app_context import init_app_context  # noqa: E402
from monai.deploy.operators import (  # noqa: E402
    DICOMDataLoaderOperator,
    DICOMSegmentationWriterOperator,
    DICOMSeriesSelectorOperator,
)
from monai.deploy.operators.dicom_seg_writer_operator import SegmentDescription  # noqa: E402
from monai.deploy.operators.dicom_utils import ModelInfo  # noqa: E402
from operators import (  # noqa: E402
    NIFTI_NAME,
    REPORT_NAME,
    STL_NAME,
    CheckedDICOMSeriesToVolumeOperator,
    ModelFiles,
    NiftiVolumeLoaderOperator,
    PAMInputError,
    PAMOperator,
    PAMResultWriterOperator,
    PreparedPrompt,
    RunState,
    prepare_prompt,
    resolve_models,
)
from operators.common import one_line  # noqa: E402

__all__ = ["PAMDeployApp", "RunPlan", "find_input", "main"]

APP_VERSION = "0.1.0"
PROG = "pam-deploy"
#: The series PAM segments: the first CT, MR or PET image series found (override with $PAM_SERIES_RULES).
DEFAULT_SERIES_RULES = json.dumps(
    {"selections": [{"name": "PAM input", "conditions": {"Modality": "(?i)^(CT|MR|PT)$"}}]}
)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LOG = logging.getLogger("pam.deploy")


@dataclass
class RunPlan:
    """Everything checked before the graph starts."""

    kind: str  # "dicom" (a folder of DICOM files) or "nifti" (one file)
    source: Path
    output: Path
    prompt: PreparedPrompt
    models: ModelFiles
    device: str = "cpu"
    series_rules: str = DEFAULT_SERIES_RULES


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def find_input(input_path: Path, exclude: set[Path] | None = None) -> tuple[str, Path]:
    """``("dicom", folder)`` for a folder with DICOM files, else ``("nifti", file)`` for its one NIfTI image.

    Raises:
        PAMInputError: nothing usable, or several NIfTI images to choose from.
    """
    exclude = {p.resolve() for p in (exclude or set())}
    if not input_path.exists():
        raise PAMInputError(f"{input_path}: no such file or folder.")
    if input_path.is_file():
        if _is_nifti(input_path):
            return "nifti", input_path
        if _is_dicom(input_path):
            raise PAMInputError(f"{input_path} is one DICOM file: pass the folder holding the whole series.")
        raise PAMInputError(f"{input_path}: not a NIfTI file (.nii / .nii.gz) nor a folder of DICOM files.")
    files = sorted(p for p in input_path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if any(_is_dicom(p) for p in files):
        return "dicom", input_path
    images = [p for p in files if _is_nifti(p) and p.resolve() not in exclude]
    if len(images) == 1:
        return "nifti", images[0]
    if len(images) > 1:
        names = ", ".join(p.name for p in images[:5])
        raise PAMInputError(f"{input_path} holds {len(images)} NIfTI images ({names}); pass the one to segment.")
    raise PAMInputError(f"{input_path}: no DICOM files (with the DICM preamble) and no NIfTI image in this folder.")


def _segment_descriptions(labels: list[int]) -> list[SegmentDescription]:
    from pydicom.sr.codedict import codes

    return [
        SegmentDescription(
            segment_label=f"PAM object {label}",
            segmented_property_category=codes.SCT.PhysicalObject,
            segmented_property_type=codes.SCT.PhysicalObject,
            algorithm_name="PAM",
            algorithm_version=APP_VERSION,
        )
        for label in labels
    ]


class PAMDeployApp(Application):
    """The graph: input (DICOM loader -> series selector -> checked volume, or NIfTI loader) -> PAM -> writers.

    ``plan`` and ``state`` are set by :func:`main` before :meth:`run` (the checks that need no image come first).
    """

    plan: RunPlan
    state: RunState

    def compose(self):
        plan, state = self.plan, self.state
        pam = PAMOperator(self, prompt=plan.prompt, models=plan.models, state=state, device=plan.device, name="pam_op")
        results = PAMResultWriterOperator(self, state=state, name="result_writer_op")
        self.add_flow(pam, results, {("result", "result")})
        if plan.kind == "dicom":
            loader = DICOMDataLoaderOperator(
                self, CountCondition(self, 1), input_folder=plan.source, name="dicom_loader_op"
            )
            selector = DICOMSeriesSelectorOperator(self, rules=plan.series_rules, name="series_selector_op")
            volume = CheckedDICOMSeriesToVolumeOperator(
                self, state=state, source=str(plan.source), name="series_to_volume_op"
            )
            seg_writer = DICOMSegmentationWriterOperator(
                self,
                segment_descriptions=_segment_descriptions(plan.prompt.labels),
                output_folder=state.staging,
                model_info=ModelInfo("pam-monai", "PAM (MONAI bundle)", APP_VERSION),
                custom_tags={"SeriesDescription": "PAM segmentation"},
                name="dicom_seg_writer_op",
            )
            self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(selector, volume, {("study_selected_series_list", "study_selected_series_list")})
            self.add_flow(volume, pam, {("image", "image")})
            self.add_flow(pam, seg_writer, {("seg_image", "seg_image")})
            self.add_flow(selector, seg_writer, {("study_selected_series_list", "study_selected_series_list")})
        else:
            loader = NiftiVolumeLoaderOperator(
                self, CountCondition(self, 1), input_path=plan.source, state=state, name="nifti_loader_op"
            )
            self.add_flow(loader, pam, {("image", "image")})


def _split_prompt(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--prompt VALUE`` / ``--prompt=VALUE`` out of ``argv`` (the SDK's parser knows only -i/-o/-m/-l/-w)."""
    prompt, rest, items = None, argv[:1], iter(argv[1:])
    for item in items:
        if item == "--prompt":
            prompt = next(items, None)
            if prompt is None:
                raise PAMInputError("--prompt needs a value: a prompt JSON file or JSON text.")
        elif item.startswith("--prompt="):
            prompt = item.split("=", 1)[1]
        else:
            rest.append(item)
    return prompt, rest


def _publish(plan: RunPlan, state: RunState, started: float) -> dict:
    """Move the staged files into the output folder (the report last, completed with the file list and total)."""
    import pydicom

    from pam_monai.data.io import write_atomic

    staging, output = state.staging, plan.output
    segs = sorted(staging.glob("*.dcm"))
    expected = [NIFTI_NAME, STL_NAME, REPORT_NAME]
    missing = [name for name in expected if not (staging / name).is_file()]
    if missing or (plan.kind == "dicom" and len(segs) != 1):
        raise RuntimeError(f"the run ended without writing {missing or 'the DICOM SEG'}; nothing was published.")
    report = json.loads((staging / REPORT_NAME).read_text())
    report["outputs"] = {"nifti": NIFTI_NAME, "stl": STL_NAME, "report": REPORT_NAME}
    if segs:
        seg = pydicom.dcmread(segs[0], stop_before_pixels=True)
        report["outputs"]["dicom_seg"] = segs[0].name
        report["dicom_seg"] = {
            "sop_instance_uid": str(seg.SOPInstanceUID),
            "series_instance_uid": str(seg.SeriesInstanceUID),
            "frames": int(seg.NumberOfFrames),
            "segments": len(seg.SegmentSequence),
        }
    report["application"] = {"name": "pam-monai MONAI Deploy app", "version": APP_VERSION}
    report["seconds"].update(state.seconds)  # read, load_models and write, as the operators measured them
    report["seconds"]["total"] = round(time.perf_counter() - started, 4)
    write_atomic(staging / REPORT_NAME, lambda temporary: temporary.write_text(json.dumps(report, indent=2)))
    for path in [*segs, staging / NIFTI_NAME, staging / STL_NAME, staging / REPORT_NAME]:
        os.replace(path, output / path.name)
    state.discard()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the application; returns the exit code (see the module docstring)."""
    from pam_monai.errors import InputError

    started = time.perf_counter()
    argv = list(sys.argv if argv is None else argv)
    input_errors = InputError  # every bad-input error of pam_monai and of this app (PAMInputError)
    try:
        prompt_value, sdk_argv = _split_prompt(argv)
        app_context = init_app_context(sdk_argv)  # -i/-o/-m/-l/-w, else HOLOSCAN_INPUT_PATH / ..._OUTPUT_PATH / ...
        input_path, output = Path(app_context.input_path), Path(app_context.output_path)
        if not input_path.exists():
            raise PAMInputError(f"{input_path}: no such input file or folder (pass -i or set HOLOSCAN_INPUT_PATH).")
        if input_path.is_dir() and not any(p.is_file() for p in input_path.rglob("*")):
            raise PAMInputError(
                f"{input_path}: the input folder is empty; put the DICOM series (or a NIfTI image) and "
                "prompt.json in it."
            )
        prompt = prepare_prompt(prompt_value, input_path)
        kind, source = find_input(input_path, set(prompt.files))
        # the SDK defaults the model path to "models"; only a path given with -m or HOLOSCAN_MODEL_PATH is binding
        given = app_context.args.get("model") or os.environ.get("HOLOSCAN_MODEL_PATH")
        models = resolve_models(given, [APP_DIR / "bundle", APP_DIR.parents[1] / "bundle"])
        plan = RunPlan(
            kind=kind,
            source=source,
            output=output,
            prompt=prompt,
            models=models,
            device=os.environ.get("PAM_DEVICE", "cpu"),
            series_rules=os.environ.get("PAM_SERIES_RULES") or DEFAULT_SERIES_RULES,
        )
    except input_errors as error:
        print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
        return 2
    _LOG.info("PAM: %s input %s, prompt from %s, weights %s", plan.kind, plan.source, prompt.origin, models.propmask)

    state = RunState.in_folder(output)
    try:
        app = PAMDeployApp([argv[0]])
        app.plan, app.state = plan, state
        state.graph_started = time.perf_counter()
        app.run()
        if not state.failed:
            report = _publish(plan, state, started)
    except Exception as error:  # a bug or an environment problem: one line here, the traceback in the log above
        _LOG.debug("run failed", exc_info=True)
        state.fail(f"{type(error).__name__}: {one_line(error)}", 1)
    finally:
        if state.failed:
            state.discard()
    if state.failed:
        print(f"{PROG}: error: {state.error}", file=sys.stderr)
        return state.exit_code
    for obj in report["objects"]:
        print(f"label {obj['label']}: {obj['voxels']} voxels, {obj['volume_ml']} ml")
    print(f"wrote {', '.join(report['outputs'].values())} to {output} in {report['seconds']['total']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
