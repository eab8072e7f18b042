"""The ``pam-monai`` command line: segment one object from one prompt, convert the authors' checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pam_monai.errors import CheckpointError, ImageReadError, PromptError, UsageError

STARTED = time.perf_counter()
"""When this module was imported: start-up time in reports counts from here (the heavy imports come later)."""

__all__ = ["main"]

# The bundle's defaults too (configs/inference.json); measured in bundle/docs/README.md.
WALKER_WEIGHT = 0.7
WALKER_WEIGHT_BOX = 0.8
WALKER_BETA = 2000.0


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def _ints(text: str, count: int, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(f"{name} must be {count} comma-separated integers, got {text!r}.") from None
    if len(values) != count:
        raise UsageError(f"{name} must be {count} comma-separated integers, got {len(values)}.")
    return values


def _click(text: str) -> tuple[int, int, int, int]:
    """``I,J,K[,+|-]`` as ``(i, j, k, +1 | -1)``."""
    parts = text.replace(" ", "").split(",")
    sign = {"+": 1, "+1": 1, "1": 1, "-": -1, "-1": -1}.get(parts[3]) if len(parts) == 4 else 1
    if len(parts) not in (3, 4) or sign is None:
        raise UsageError(f"--click must be I,J,K or I,J,K,+ or I,J,K,- (voxel indices), got {text!r}.")
    i, j, k = _ints(",".join(parts[:3]), 3, "--click")
    return i, j, k, sign


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pam-monai", description="PAM: one 2D prompt to a 3D segmentation.")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment the object(s) of one prompt in a 3D image")
    segment.add_argument("image", help="NIfTI, NRRD or MHA file, or a DICOM series folder")
    prompt = segment.add_argument_group("prompt (a mask and boxes may be mixed; a 3D box or ROI goes alone)")
    prompt.add_argument(
        "--mask-prompt", help="label image on the image's grid, nonzero on the annotated slices (any number)"
    )
    prompt.add_argument(
        "--box", action="append", help="I0,J0,I1,J1: inclusive box on its --slice (repeat both for several slices)"
    )
    prompt.add_argument("--box3d", help="I0,J0,K0,I1,J1,K1: inclusive 3D box (voxel indices)")
    prompt.add_argument(
        "--roi", help="3D Slicer ROI markup (.mrk.json): a solid ROI is a 3D box, a one-slice-thin ROI a 2D box"
    )
    segment.add_argument(
        "--slice", type=int, action="append", help="index of the box's slice along --axis (one per --box)"
    )
    refine = segment.add_argument_group("correct a previous result (--mask-prompt, --box and --click correct it)")
    refine.add_argument("--previous", help="a label image written by pam-monai segment, to correct")
    refine.add_argument(
        "--previous-report", help="its JSON report: the slices that guided it (default: each object's largest slice)"
    )
    refine.add_argument(
        "--click", action="append", help="I,J,K[,+|-]: a foreground (+, default) or background (-) click (repeatable)"
    )
    refine.add_argument("--label", type=int, help="the object --box and --click are for (default: the only one, or 1)")
    segment.add_argument(
        "--axis", type=int, default=2, choices=(0, 1, 2), help="array axis normal to the prompt slice (default 2)"
    )
    segment.add_argument("-o", "--output", required=True, help="output label image (.nii.gz)")
    segment.add_argument("--report", help="write a JSON report here")
    segment.add_argument("--preview", help="write a PNG preview here")
    _inference_options(segment)

    folder = commands.add_parser(
        "segment-folder", help="segment every image of a folder from its own prompt file (networks loaded once)"
    )
    folder.add_argument("images", help="folder of images (NIfTI, NRRD, MHA) or DICOM series subfolders")
    folder.add_argument(
        "--prompts",
        help="folder of prompt files NAME.mrk.json (Slicer ROI), NAME.json (box) or NAME_prompt.nii.gz (mask); "
        "default: the images folder",
    )
    folder.add_argument(
        "-o", "--output", required=True, help="folder for NAME_seg.nii.gz, NAME_report.json, summary.csv"
    )
    folder.add_argument("--previews", action="store_true", help="also write NAME_preview.png")
    _inference_options(folder)

    convert = commands.add_parser("convert-checkpoint", help="convert the authors' PAM weights to pam-monai's")
    convert.add_argument("source", help="the authors' .pth file (raw state dict or with model_state_dict)")
    convert.add_argument("-o", "--output", required=True, help="where to write the converted state dict")
    convert.add_argument("--kind", choices=("propmask", "box2mask"), help="default: detected from the keys")

    set2d = commands.add_parser("propagate-2d", help="segment a set of 2D images from a few annotated examples")
    set2d.add_argument("--guides", required=True, help="folder of NAME + NAME_mask image pairs, or an image,mask list")
    set2d.add_argument("--images", required=True, help="folder of target images (PNG, JPEG, TIFF, 2D NIfTI)")
    set2d.add_argument("-o", "--output", required=True, help="folder for NAME_mask.png masks and summary.csv")
    set2d.add_argument("--batch-size", type=int, default=16, help="target images per forward pass (default 16)")
    set2d.add_argument(
        "--localise",
        choices=("match", "register", "auto", "none"),
        default="match",
        help="find each guide's object in every image and segment a crop around it: by template matching (default), "
        "affine registration, or auto (the match where it correlates well, else registration); none: whole images "
        "at the network's input size",
    )
    set2d.add_argument(
        "--fusion", choices=("best", "mean"), default="best", help="several guides: the best-placed one's or the mean"
    )
    set2d.add_argument(
        "--registered-mask",
        choices=("auto", "on", "off"),
        default="auto",
        help="average the network's probability with the best-placed guide's mask warped onto the image: auto "
        "(where the affine registration aligns the images well; default), on, off",
    )
    large = commands.add_parser("propagate-large", help="label the instances of one large 2D image from examples")
    large.add_argument("image", help="the large image (TIFFs are read tile by tile)")
    large.add_argument("--guides", required=True, help="folder of NAME + NAME_mask image pairs, or an image,mask list")
    large.add_argument("-o", "--output", required=True, help="instance label image to write (.tif, BigTIFF)")
    large.add_argument("--window", type=int, help="sliding-window side in pixels (default: from the instance size)")
    large.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    large.add_argument("--border", type=int, help="pixels weighted down at each window edge (default: from the size)")
    large.add_argument("--max-guides", type=int, default=2, help="annotated instances used as guides (default 2)")
    large.add_argument(
        "--boundary",
        choices=("intensity", "network"),
        default="intensity",
        help="intensity: refine object edges with the guides' intensities where that fits the guides better "
        "(default); network: the network's thresholded probability",
    )
    for sub in (set2d, large):
        sub.add_argument("--checkpoint", help="PropMask weights (default: the bundle's)")
        sub.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
        sub.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        _threads_option(sub)
    for sub in (segment, folder, convert, set2d, large):
        sub.add_argument(
            "-v", "--verbose", action="store_true", help="also show other libraries' warnings and log messages"
        )
    return parser


@contextmanager
def third_party_output(verbose: bool) -> Iterator[None]:
    """Hide other libraries' warnings and log records below ERROR for the duration of a command (the CLI prints
    only its own progress and result lines) unless ``verbose``; the previous state is restored afterwards, so
    ``main`` can run inside a larger program and library users keep every warning."""
    with warnings.catch_warnings():
        if verbose:
            yield
            return
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def nibabel_without_pydicom() -> None:
    """Import nibabel without pydicom when neither is loaded yet (the segment commands call it first).

    nibabel imports pydicom (and with it PIL, requests and urllib3: about a tenth of the command's start-up) only to
    parse DICOM headers embedded in NIfTI extensions, which the command line never reads. The block is lifted right
    after, so DICOM series are still read (by MONAI's readers, which import pydicom themselves). Library users'
    nibabel is left as it is.
    """
    if "nibabel" in sys.modules or "pydicom" in sys.modules:
        return
    sys.modules["pydicom"] = None  # type: ignore[assignment]  # `import pydicom` fails, so nibabel goes without
    try:
        import nibabel  # noqa: F401
    finally:
        if "pydicom" in sys.modules and sys.modules["pydicom"] is None:
            del sys.modules["pydicom"]


def _inference_options(parser: argparse.ArgumentParser) -> None:
    """Weights, device and inference settings shared by ``segment`` and ``segment-folder``."""
    parser.add_argument("--checkpoint", help="PropMask weights (default: the bundle's)")
    parser.add_argument("--box2mask-checkpoint", help="Box2Mask weights (default: the bundle's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--thickness-mm", type=float, default=20.0, help="neighbourhood per round (default 20)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16) forwards: faster on GPUs")
    parser.add_argument(
        "--flip-tta", action="store_true", help="also propagate mirrored and average (twice the network cost)"
    )
    parser.add_argument(
        "--walker-weight",
        type=float,
        default=WALKER_WEIGHT,
        help=f"weight of a 3D random walker's opinion for mask prompts, 0 for PropMask alone (default {WALKER_WEIGHT})",
    )
    parser.add_argument(
        "--walker-weight-box",
        type=float,
        default=WALKER_WEIGHT_BOX,
        help=f"the same for box prompts (default {WALKER_WEIGHT_BOX})",
    )
    _threads_option(parser)


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"CPU threads for the networks (default: the cores available, here {available_cores()})",
    )


def _predictor(args: argparse.Namespace):  # -> PAMPredictor, imported late
    from pam_monai.predictor import PAMPredictor

    if args.thickness_mm <= 0:
        raise UsageError(f"--thickness-mm must be positive, got {args.thickness_mm}.")
    for flag, weight in (("--walker-weight", args.walker_weight), ("--walker-weight-box", args.walker_weight_box)):
        if not 0.0 <= weight <= 1.0:
            raise UsageError(f"{flag} must be in [0, 1], got {weight}.")
    return PAMPredictor.from_checkpoints(
        args.checkpoint,
        args.box2mask_checkpoint,
        device=args.device,
        thickness_mm=args.thickness_mm,
        progress=not args.no_progress,
        amp=args.amp,
        flip_tta=args.flip_tta,
        walker_weight=args.walker_weight,
        walker_weight_box=args.walker_weight_box,
        walker_beta=WALKER_BETA,
    )


def _segment(args: argparse.Namespace) -> dict:
    nibabel_without_pydicom()
    from pam_monai.cli.segment import CasePrompt, segment_case

    boxes, slices = args.box or [], args.slice or []
    if boxes and not slices:
        raise UsageError("--box needs --slice, the index of the box's slice along --axis.")
    if slices and not boxes:
        raise UsageError("--slice goes with --box only.")
    if len(boxes) != len(slices):
        raise UsageError(f"give one --slice per --box: got {len(boxes)} boxes and {len(slices)} slices.")
    given = [
        name
        for name, value in (
            ("--mask-prompt", args.mask_prompt),
            ("--box", boxes),
            ("--box3d", args.box3d),
            ("--roi", args.roi),
            ("--click", args.click),
        )
        if value
    ]
    if not given:
        raise UsageError(
            "give a prompt: --mask-prompt, --box with --slice, --box3d, --roi, or --click with --previous."
        )
    if (args.box3d or args.roi) and len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: a 3D box or ROI is a prompt on its own.")
    if args.click and not args.previous:
        raise UsageError("--click corrects a result: give it with --previous seg.nii.gz.")
    if args.previous_report and not args.previous:
        raise UsageError("--previous-report goes with --previous.")
    pairs = tuple((_ints(b, 4, "--box"), k) for b, k in zip(boxes, slices))
    prompt = CasePrompt(
        mask_prompt=args.mask_prompt,
        box=pairs[0][0] if len(pairs) == 1 else None,
        slice_index=pairs[0][1] if len(pairs) == 1 else None,
        box3d=_ints(args.box3d, 6, "--box3d") if args.box3d else None,
        roi=args.roi,
        axis=args.axis,
        boxes=pairs if len(pairs) > 1 else (),
        clicks=tuple(_click(text) for text in args.click or ()),
        previous=args.previous,
        previous_report=args.previous_report,
        label=args.label,
    )
    output = Path(args.output)
    if not (output.name.endswith(".nii") or output.name.endswith(".nii.gz")):
        raise UsageError(f"{output}: the output must be a NIfTI file (.nii or .nii.gz).")
    predictor = _predictor(args)
    startup = time.perf_counter() - STARTED
    return segment_case(predictor, args.image, prompt, output, args.report, args.preview, startup_seconds=startup)


def _segment_folder(args: argparse.Namespace) -> dict:
    nibabel_without_pydicom()
    from pam_monai.cli.segment import segment_folder

    summary = segment_folder(
        _predictor(args), args.images, args.prompts or args.images, args.output, args.previews, not args.no_progress
    )
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} of {summary['cases']} cases failed; see {args.output}/summary.csv.")
    return summary


def _convert(args: argparse.Namespace) -> dict:
    from pam_monai.networks.checkpoint import convert_checkpoint

    destination = convert_checkpoint(args.source, args.output, kind=args.kind)
    return {"output": str(destination)}


def _propmask(args: argparse.Namespace):  # -> the PropMask network, in eval mode
    import torch

    from pam_monai.networks.checkpoint import build_network_from_checkpoint
    from pam_monai.predictor import default_checkpoints

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available.")
    path = args.checkpoint or default_checkpoints()[0]
    return build_network_from_checkpoint(path, kind="propmask").to(args.device).eval()


def _propagate_2d(args: argparse.Namespace) -> dict:
    from pam_monai.cli.propagate2d import check_registered_mask, find_images, load_guides, propagate_folder

    guides = load_guides(args.guides)  # bad input fails before the network is loaded
    find_images(args.images)
    check_registered_mask(args.registered_mask, args.localise)
    rows = propagate_folder(
        guides,
        args.images,
        args.output,
        _propmask(args),
        args.batch_size,
        progress=not args.no_progress,
        localise=args.localise,
        fusion=args.fusion,
        registered_mask=args.registered_mask,
    )
    return {"message": f"wrote {len(rows)} masks and summary.csv to {args.output}"}


def _propagate_large(args: argparse.Namespace) -> dict:
    from pam_monai.cli.propagate2d import load_guides, propagate_large_image
    from pam_monai.data.io import write_atomic
    from pam_monai.images2d.io import image_suffix, probe_image2d

    output = Path(args.output)
    if image_suffix(output) not in (".tif", ".tiff"):
        raise UsageError(f"{output}: the label image must be a TIFF (.tif or .tiff).")
    if args.window is not None and args.window < 16:
        raise UsageError(f"--window must be at least 16 pixels, got {args.window}.")
    probe_image2d(args.image)
    guides = load_guides(args.guides)  # bad input fails before the network is loaded
    result = propagate_large_image(
        args.image,
        guides,
        _propmask(args),
        window=args.window,
        batch_size=args.batch_size,
        output=output,
        border=args.border,
        max_guides=args.max_guides,
        boundary=args.boundary,
        progress=not args.no_progress,
    )
    summary = {"image": str(args.image), **result.summary()}
    report = output.with_name(output.name[: -len(image_suffix(output))] + ".json")
    try:
        write_atomic(report, lambda temporary: temporary.write_text(json.dumps(summary, indent=2)))
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return {"message": f"{result.count} instances -> {output}", "count": result.count}


_COMMANDS = {"propagate-2d": _propagate_2d, "propagate-large": _propagate_large, "segment-folder": _segment_folder}


def result_lines(summary: dict) -> list[str]:
    """The lines ``pam-monai segment`` ends with: per object its volume and extent, then where it went and how long
    each stage took."""
    lines = []
    for obj in summary["objects"]:
        extent = obj.get("extent")
        span = f", {extent['slices']} slices = {extent['mm']} mm along axis {summary['axis']}" if extent else ""
        lines.append(f"label {obj['label']}: {obj['volume_ml']} ml ({obj['voxels']} voxels){span}")
    seconds = summary["seconds"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if k not in ("total", "wall"))
    total = seconds.get("wall", seconds.get("total", 0.0))
    lines.append(f"wrote {summary['output']} in {total:.1f} s ({stages})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed, 2 bad usage or input)."""
    args = _parser().parse_args(argv)
    with third_party_output(args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    threads_before = torch.get_num_threads()
    try:
        threads = getattr(args, "threads", None)
        if threads is not None and threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}.")
        if hasattr(args, "threads"):
            # One intra-op thread per available core: torch's own default may count cores this process cannot use.
            torch.set_num_threads(threads or available_cores())
        if args.command in _COMMANDS:
            summary = _COMMANDS[args.command](args)
        else:
            summary = _segment(args) if args.command == "segment" else _convert(args)
    except (UsageError, PromptError, ImageReadError, CheckpointError, ValueError, OSError) as error:
        print(f"pam-monai: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"pam-monai: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads_before)  # main() may run inside a larger program
    if args.command in _COMMANDS:
        print(summary["message"])
    elif args.command == "segment":
        for line in result_lines(summary):
            print(line)
    else:
        print(f"wrote {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
