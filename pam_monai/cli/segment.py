"""Segment 3D images from prompts and write what users look at: the label image, a JSON report, a PNG preview.

:func:`segment_case` serves ``pam-monai segment`` (one image, one prompt); :func:`segment_folder` serves
``pam-monai segment-folder`` (every image of a folder with its own prompt file, the networks loaded once), the way
nnU-Net predicts a folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pam_monai.data.io import ImageError, load_volume, save_label_image, write_atomic
from pam_monai.errors import NoObjectError
from pam_monai.networks.checkpoint import CheckpointError
from pam_monai.predictor import PAMPredictor
from pam_monai.prompts.core import PromptError, read_mask_prompt
from pam_monai.prompts.parse import load_prompt_files, parse_prompt

__all__ = ["CasePrompt", "NoObjectError", "add_extents", "find_cases", "segment_case", "segment_folder"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
"""Image files a folder may hold; a subfolder is read as a DICOM series."""

PROMPT_SUFFIXES = (".mrk.json", ".json", *IMAGE_SUFFIXES)


@dataclass(frozen=True)
class CasePrompt:
    """One case's prompt as the user gave it: a mask-prompt file (any slices) and / or 2D boxes on slices, or a 3D
    box, or a 3D Slicer ROI markup; ``axis`` is the array axis normal to the prompt slices (an ROI brings its own).

    With ``previous`` (a label image written before) the mask, boxes and ``clicks`` ``(i, j, k, +1 | -1)`` correct
    that result instead (:meth:`~pam_monai.predictor.PAMPredictor.refine`): the corrected slices become guides and
    only the slices up to their neighbouring guides are recomputed. The previous result's guides are the
    ``prompt_slices`` of its report (``previous_report``, the JSON that ``--report`` wrote with it), else each
    object's largest slice along ``axis``. ``label`` is the object boxes and clicks are for."""

    mask_prompt: str | None = None
    box: tuple[int, ...] | None = None
    slice_index: int | None = None
    box3d: tuple[int, ...] | None = None
    roi: str | None = None
    axis: int = 2
    boxes: tuple[tuple[tuple[int, ...], int], ...] = ()
    clicks: tuple[tuple[int, int, int, int], ...] = ()
    previous: str | None = None
    previous_report: str | None = None
    label: int | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CasePrompt:
        """A prompt file: a Slicer ROI (``.mrk.json``), box JSON (``{"box": [...], "slice": k, "axis": a}`` or
        ``{"box3d": [...]}``, see :func:`~pam_monai.prompts.core.parse_prompt`) or a mask-prompt image."""
        args = parse_prompt(str(path))
        if "roi_path" in args:
            return cls(roi=args["roi_path"])
        mask, previous = args.get("mask_prompt_path"), args.get("previous_path")
        if str(path).endswith(".json"):  # images named in a JSON prompt are relative to that file
            mask = str(Path(path).parent / mask) if mask is not None and not Path(mask).is_absolute() else mask
            if previous is not None and not Path(previous).is_absolute():
                previous = str(Path(path).parent / previous)
        return cls(
            mask_prompt=mask,
            box=args.get("box"),
            slice_index=args.get("slice_index"),
            box3d=args.get("box3d"),
            axis=int(args.get("axis", 2)),
            boxes=tuple(args.get("boxes", ())),
            clicks=tuple(args.get("clicks", ())),
            previous=previous,
            label=args.get("label"),
        )


def segment_case(
    predictor: PAMPredictor,
    image: str | os.PathLike,
    prompt: CasePrompt,
    output: str | os.PathLike,
    report: str | os.PathLike | None = None,
    preview: str | os.PathLike | None = None,
    *,
    startup_seconds: float | None = None,
) -> dict[str, Any]:
    """Segment ``image`` from ``prompt``; write the label image (NIfTI on the image's grid), the JSON report and the
    PNG preview when asked, each atomically.

    Args:
        startup_seconds: time spent before this call (imports, loading the networks), reported as the ``startup``
            stage and counted in ``wall``.

    Returns:
        the report: per object voxels, volume in ml, slices covered and extent along the axis (slices and mm); the
        prompt as resolved on the image grid; rounds, predictions and seconds per stage (``startup`` when given,
        ``read`` ... ``write``, ``total`` from reading to writing, ``wall`` = startup + total).

    Raises:
        NoObjectError: when nothing was found (nothing is written).
    """
    started = time.perf_counter()
    predictor.set_volume(*load_volume(image))  # a NIfTI with nibabel alone: MONAI only for other formats
    volume, affine = predictor.volume, predictor.affine
    mask_prompt = None
    if prompt.mask_prompt:
        mask_prompt = read_mask_prompt(prompt.mask_prompt, tuple(volume.shape), affine)
    read_seconds = time.perf_counter() - started

    resolved = {"box": prompt.box, "slice_index": prompt.slice_index, "box3d": prompt.box3d, "axis": prompt.axis}
    if prompt.roi:
        resolved = {"box": None, "slice_index": None, "box3d": None, "axis": prompt.axis} | predictor.roi_prompt(
            prompt.roi
        )
    if prompt.previous or prompt.clicks:
        result, previous_seconds = refine_case(predictor, volume, prompt, mask_prompt)
        read_seconds += previous_seconds
    else:
        boxes = list(prompt.boxes) or None
        result = predictor.segment(mask_prompt=mask_prompt, boxes=boxes, label=prompt.label or 1, **resolved)
    if not bool(result.labels.any()):
        raise NoObjectError("the model found no object for this prompt; nothing was written.")
    summary = predictor.report(result)
    summary["seconds"]["read"] = round(read_seconds, 4)
    summary["image"] = str(image)
    summary["prompt"] = {
        "mask_prompt": prompt.mask_prompt,
        "roi": prompt.roi,
        "box": resolved["box"],
        "slice": resolved["slice_index"],
        "box3d": resolved["box3d"],
        "axis": resolved["axis"],
    }
    if prompt.boxes:
        summary["prompt"]["boxes"] = [{"box": list(b), "slice": k} for b, k in prompt.boxes]
    if prompt.previous or prompt.clicks:
        summary["prompt"] |= {"previous": prompt.previous, "clicks": [list(c) for c in prompt.clicks]}

    write_start = time.perf_counter()
    save_label_image(result.labels, affine, output)
    if preview:
        prompt_slices = sorted({s for slices in result.prompt_slices.values() for s in slices})
        from pam_monai.visualize.preview import save_preview  # PIL and drawing only when a preview is asked for

        guides = {label: {k: m.cpu().numpy() for k, m in masks.items()} for label, masks in result.guides.items()}
        save_preview(volume.numpy(), result.labels.numpy(), result.axis, prompt_slices, preview, guides=guides)
    summary["seconds"]["write"] = round(time.perf_counter() - write_start, 4)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 4)
    seconds = summary["seconds"]
    first = {"startup": round(startup_seconds, 4)} if startup_seconds is not None else {}
    summary["seconds"] = first | {"read": seconds.pop("read")} | seconds  # in the order they ran
    if startup_seconds is not None:
        summary["seconds"]["wall"] = round(startup_seconds + seconds["total"], 4)
    add_extents(summary)
    summary["output"] = str(output)
    if report:
        write_atomic(report, lambda temporary: temporary.write_text(json.dumps(summary, indent=2)))
    return summary


def _previous_guides(prompt: CasePrompt) -> dict[int, list[int]] | None:
    """Per label, the guide slices a previous report records (its objects' ``prompt_slices``)."""
    if not prompt.previous_report:
        return None
    try:
        recorded = json.loads(Path(prompt.previous_report).read_text())
        objects = {int(o["label"]): [int(k) for k in o["prompt_slices"]] for o in recorded["objects"]}
    except FileNotFoundError:
        raise PromptError(f"{prompt.previous_report}: no such report.") from None
    except (ValueError, KeyError, TypeError):
        raise PromptError(
            f"{prompt.previous_report}: not a pam-monai segment report (objects, prompt_slices)."
        ) from None
    if int(recorded.get("axis", prompt.axis)) != prompt.axis:
        raise PromptError(
            f"{prompt.previous_report}: the previous result ran along axis {recorded['axis']}, "
            f"not --axis {prompt.axis}."
        )
    return objects


def refine_case(predictor: PAMPredictor, volume: Any, prompt: CasePrompt, mask_prompt: Any) -> tuple[Any, float]:
    """One refinement in one call: the previous result (on the image's grid) corrected by the prompt's mask, boxes
    and clicks (see :class:`CasePrompt` for the guides it starts from). Returns the result and the seconds spent
    reading the previous result (the report's ``read`` stage)."""
    if not prompt.previous:
        raise PromptError("clicks correct a result: give the previous result (--previous seg.nii.gz).")
    if prompt.box3d is not None or prompt.roi:
        raise PromptError("a 3D box or ROI is a new prompt: it cannot correct a previous result.")
    if not (mask_prompt is not None or prompt.box is not None or prompt.boxes or prompt.clicks):
        raise PromptError("the correction is empty: give --mask-prompt, --box with --slice, or --click.")
    started = time.perf_counter()
    args = load_prompt_files(
        {"previous_path": prompt.previous, "clicks": list(prompt.clicks)}, tuple(volume.shape), predictor.affine
    )
    read_seconds = time.perf_counter() - started
    start = predictor.open_session(args["previous"], prompt.axis, _previous_guides(prompt))
    result = predictor.refine(
        start,
        mask_slices=mask_prompt,
        clicks=args["clicks"] or None,
        box=prompt.box,
        slice_index=prompt.slice_index,
        boxes=list(prompt.boxes) or None,
        label=prompt.label,
    )
    return result, read_seconds


def add_extents(summary: dict[str, Any]) -> None:
    """Give every object of a report its extent along the report's axis: ``{"slices": n, "mm": n * spacing}``
    (first to last covered slice inclusive), ``None`` for an empty object."""
    spacing = float(summary["spacing_mm"][summary["axis"]])
    for obj in summary["objects"]:
        covered = obj.get("slices_covered")
        if not covered:
            obj["extent"] = None
            continue
        slices = int(covered["last"]) - int(covered["first"]) + 1
        obj["extent"] = {"slices": slices, "mm": round(slices * spacing, 2)}


def _case_name(path: Path) -> str | None:
    """The case name of an image file or DICOM folder, ``None`` for anything else."""
    if path.is_dir():
        return path.name
    lower = path.name.lower()
    suffix = next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), None)
    return path.name[: -len(suffix)] if suffix else None


def find_cases(
    images: str | os.PathLike, prompts: str | os.PathLike, exclude: tuple[str | os.PathLike, ...] = ()
) -> list[tuple[str, Path, Path | None]]:
    """Pair each image of ``images`` with its prompt in ``prompts``: ``NAME`` or ``NAME_prompt`` with a suffix of
    :data:`PROMPT_SUFFIXES` (``.mrk.json``, ``.json``, or an image). Images named ``*_prompt`` are prompts, not cases;
    the prompts folder and the ``exclude`` folders (e.g. the output folder) are not DICOM cases either.

    Returns:
        ``(name, image, prompt or None)`` sorted by name; ``None`` where no prompt file was found.

    Raises:
        PromptError: when a folder is missing or holds no image.
    """
    images, prompts = Path(images), Path(prompts)
    for folder in (images, prompts):
        if not folder.is_dir():
            raise PromptError(f"{folder}: no such folder.")
    skipped = {Path(folder).resolve() for folder in (prompts, *exclude)}
    cases = {}
    for path in sorted(images.iterdir()):
        name = _case_name(path)
        if name is not None and not name.endswith("_prompt") and path.resolve() not in skipped:
            cases[name] = path
    if not cases:
        raise PromptError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)} files or DICOM folders).")
    found = []
    for name, image in cases.items():
        candidates = [prompts / f"{stem}{suffix}" for stem in (name, f"{name}_prompt") for suffix in PROMPT_SUFFIXES]
        matches = [p for p in candidates if p.is_file() and p != image]
        if len(matches) > 1:
            raise PromptError(f"{name}: several prompt files {[p.name for p in matches]}; keep one.")
        found.append((name, image, matches[0] if matches else None))
    return found


_CASE_ERRORS = (PromptError, ImageError, CheckpointError, NoObjectError, ValueError)


def segment_folder(
    predictor: PAMPredictor,
    images: str | os.PathLike,
    prompts: str | os.PathLike,
    output_dir: str | os.PathLike,
    previews: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment every image of ``images`` from its prompt file (see :func:`find_cases`).

    Writes ``NAME_seg.nii.gz`` and ``NAME_report.json`` (and ``NAME_preview.png`` with ``previews``) per case into
    ``output_dir``, and ``summary.csv`` (a row per object, or per failed case with its error) plus ``summary.json``.
    A case that fails (unreadable image, bad prompt, nothing found) is recorded and the others still run.

    Returns:
        ``{"cases", "succeeded", "failed", "output_dir", "message"}``.
    """
    output_dir = Path(output_dir)
    cases = find_cases(images, prompts, exclude=(output_dir,))
    output_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}
    for name, image, prompt_file in tqdm(cases, desc="cases", unit="case", disable=not progress):
        try:
            if prompt_file is None:
                raise PromptError(f"no prompt file ({name}.mrk.json, {name}.json or {name}_prompt.nii.gz, ...).")
            prompt = CasePrompt.from_file(prompt_file)
            report = segment_case(
                predictor,
                image,
                prompt,
                output_dir / f"{name}_seg.nii.gz",
                output_dir / f"{name}_report.json",
                output_dir / f"{name}_preview.png" if previews else None,
            )
        except _CASE_ERRORS as error:
            message = " ".join(str(error).split())
            rows.append(
                {"case": name, "status": "failed", "label": "", "voxels": "", "volume_ml": "", "error": message}
            )
            reports[name] = {"status": "failed", "error": message}
            continue
        reports[name] = {"status": "ok", "prompt": report["prompt"], "objects": report["objects"]}
        for obj in report["objects"]:
            rows.append(
                {
                    "case": name,
                    "status": "ok",
                    "label": obj["label"],
                    "voxels": obj["voxels"],
                    "volume_ml": obj["volume_ml"],
                    "error": "",
                }
            )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["case", "status", "label", "voxels", "volume_ml", "error"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(output_dir / "summary.csv", lambda temporary: temporary.write_text(text.getvalue()))
    write_atomic(output_dir / "summary.json", lambda temporary: temporary.write_text(json.dumps(reports, indent=2)))
    failed = sum(1 for r in reports.values() if r["status"] == "failed")
    return {
        "cases": len(cases),
        "succeeded": len(cases) - failed,
        "failed": failed,
        "output_dir": str(output_dir),
        "message": f"{len(cases) - failed} of {len(cases)} cases segmented -> {output_dir} (summary.csv)",
    }
