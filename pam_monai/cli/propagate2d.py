"""Pseudo-labelling 2D images from a few annotated examples: image sets and single very large images.

Guides (the annotated examples) are given as

* a folder of pairs ``NAME.<ext>`` + ``NAME_mask.<ext>`` (``<ext>``: png, jpg, jpeg, tif, tiff, nii, nii.gz; the
  two may differ), every image needing its mask; or
* a list file (``.csv`` / ``.txt``): one ``image,mask`` pair per line, paths relative to the list file's folder;
  blank lines, ``#`` comments and an ``image,mask`` header line are skipped.

Masks are binary: nonzero (any channel) marks the object (JPEG masks: above half their maximum). RGB images are
converted to luminance. Targets are every supported image of a folder except ``*_mask.*`` files.

* :func:`propagate_folder` writes ``NAME_mask.png`` (0/255) per target plus ``summary.csv``.
* :func:`propagate_large_image` labels the instances of one large image (TIFFs read tile by tile, the label image
  written tile by tile to a BigTIFF).

Every write is atomic; bad input raises a :class:`ValueError` subclass with a one-line message naming the file,
and leaves no output behind.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pam_monai.data.io import write_atomic
from pam_monai.images2d.boundary2d import RefiningStream, guide_refinement
from pam_monai.images2d.io import (
    image_suffix,
    open_region_reader,
    probe_image2d,
    read_image2d,
    read_mask2d,
    write_label_tiff,
    write_mask_png,
)
from pam_monai.images2d.localise import FUSIONS, LOCALISERS
from pam_monai.images2d.set2d import (
    Propagate2DError,
    check_guides,
    check_registered_mask,
    localised_targets,
    network_input_size,
    predict_targets,
    prepare_guides,
    propagate_to_images,
    splits_encoding,
)
from pam_monai.images2d.sliding2d import instance_guides, label_instances, stitch_probability

__all__ = [
    "LargeImageResult",
    "Propagate2DError",
    "check_registered_mask",
    "find_guides",
    "find_images",
    "load_guides",
    "propagate_folder",
    "propagate_large_image",
    "propagate_to_images",
]

MASK_SUFFIX = "_mask"
BOUNDARIES = ("intensity", "network")
QUERY_FACTOR = 4  # default query window / guide crop side, for networks that encode queries apart from guides
SUMMARY_COLUMNS = ("image", "area_px", "mean_confidence")
Guides = Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]]


def _stem(path: Path) -> str:
    suffix = image_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and image_suffix(p))


def _folder_guides(folder: Path) -> list[tuple[Path, Path]]:
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for path in _image_files(folder):
        stem = _stem(path)
        is_mask = stem.endswith(MASK_SUFFIX) and len(stem) > len(MASK_SUFFIX)
        key, table = (stem[: -len(MASK_SUFFIX)], masks) if is_mask else (stem, images)
        if key in table:
            raise Propagate2DError(f"{path}: two guide files share the name {key!r} ({table[key].name}).")
        table[key] = path
    for key, mask in masks.items():
        if key not in images:
            raise Propagate2DError(f"{mask}: guide mask without its image {key}.<ext> in {folder}.")
    missing = [images[k] for k in images if k not in masks]
    if missing:
        raise Propagate2DError(f"{missing[0]}: guide image without its mask {_stem(missing[0])}{MASK_SUFFIX}.<ext>.")
    if not images:
        raise Propagate2DError(f"{folder}: no guides found (expected NAME.png + NAME{MASK_SUFFIX}.png pairs).")
    return [(images[k], masks[k]) for k in sorted(images)]


def _list_guides(list_file: Path) -> list[tuple[Path, Path]]:
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise Propagate2DError(f"{list_file}: cannot read the guide list ({' '.join(str(error).split())}).") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([text.replace("\t", ",")]))]
        fields = [f for f in fields if f]
        if [f.lower() for f in fields] == ["image", "mask"]:
            continue
        if len(fields) != 2:
            raise Propagate2DError(f"{list_file}:{number}: expected 'image,mask', got {text!r}.")
        image, mask = (Path(f) if Path(f).is_absolute() else list_file.parent / f for f in fields)
        pairs.append((image, mask))
    if not pairs:
        raise Propagate2DError(f"{list_file}: the guide list names no image,mask pair.")
    return pairs


def find_guides(source: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(image, mask)`` paths of the guides in a folder (``NAME`` + ``NAME_mask``) or a CSV/TXT list file."""
    source = Path(source)
    if source.is_dir():
        return _folder_guides(source)
    if source.is_file():
        return _list_guides(source)
    raise Propagate2DError(f"{source}: no such guide folder or list file.")


def load_guides(source: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read and check the guides (grey float32 image, boolean mask) of a folder or list file.

    Raises:
        ImageReadError: an unreadable file.
        Propagate2DError: no guides, a missing partner, an empty mask or an image and mask of different sizes.
    """
    pairs = find_guides(source)
    loaded = [(read_image2d(image), read_mask2d(mask)) for image, mask in pairs]
    return check_guides(loaded, names=[f"{mask} (mask of {image.name})" for image, mask in pairs])


def find_images(source: str | os.PathLike) -> list[Path]:
    """Target images: one file, or every supported image of a folder except ``*_mask.*`` files (sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise Propagate2DError(f"{source}: no such image folder or file.")
    found = [p for p in _image_files(source) if not _stem(p).endswith(MASK_SUFFIX)]
    if not found:
        raise Propagate2DError(f"{source}: no target images found (PNG, JPEG, TIFF or 2D NIfTI).")
    return found


def _device(network: torch.nn.Module) -> torch.device:
    parameter = next(iter(network.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def propagate_folder(
    guides: Guides | str | os.PathLike,
    images: str | os.PathLike,
    output_dir: str | os.PathLike,
    network: torch.nn.Module,
    batch_size: int = 16,
    progress: bool = False,
    localise: str = "match",
    fusion: str = "best",
    registered_mask: str = "auto",
) -> list[dict[str, object]]:
    """Segment every target image with all guides; write ``NAME_mask.png`` (0/255) and ``summary.csv``.

    ``guides`` is a guide folder / list file or ``(image, mask)`` pairs; ``images`` a folder or one file;
    ``localise`` / ``fusion`` / ``registered_mask`` as in :func:`propagate_to_images` (``"none"``: the whole-image
    path).

    Inputs are checked before anything is written (guides read, target headers probed); if a later step fails,
    the files this call wrote are removed again.

    Returns:
        the summary rows: ``image`` (file name), ``area_px``, ``mean_confidence`` (mean foreground probability
        inside the predicted mask; empty for an empty mask).
    """
    if batch_size < 1:
        raise Propagate2DError(f"batch size must be at least 1, got {batch_size}.")
    checked = load_guides(guides) if isinstance(guides, (str, os.PathLike)) else check_guides(guides)
    targets = find_images(images)
    for target in targets:
        probe_image2d(target)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise Propagate2DError(f"{output_dir}: the output must be a folder.")
    outputs: dict[str, Path] = {}
    for target in targets:
        name = f"{_stem(target)}{MASK_SUFFIX}.png"
        if name in outputs:
            raise Propagate2DError(f"{target}: its mask {name} would overwrite that of {outputs[name].name}.")
        outputs[name] = target
    for what, value, known in (("localiser", localise, LOCALISERS), ("fusion", fusion, FUSIONS)):
        if value not in known:
            raise Propagate2DError(f"unknown {what} {value!r}: expected one of {', '.join(known)}.")
    check_registered_mask(registered_mask, localise)
    if localise == "none":
        batch = prepare_guides(checked, network_input_size(network), device=_device(network))
        predict = lambda grey: predict_targets(network, batch, grey)  # noqa: E731
    else:
        predict = lambda grey: localised_targets(  # noqa: E731
            network, checked, grey, localise, fusion, registered_mask=registered_mask
        )

    created = not output_dir.exists()
    written: list[Path] = []
    rows: list[dict[str, object]] = []
    try:
        with tqdm(total=len(targets), disable=not progress, unit="image", desc="propagate-2d") as bar:
            for start in range(0, len(targets), batch_size):
                chunk = targets[start : start + batch_size]
                for target, (probability, mask) in zip(chunk, predict([read_image2d(t) for t in chunk])):
                    written.append(write_mask_png(mask, output_dir / f"{_stem(target)}{MASK_SUFFIX}.png"))
                    area = int(mask.sum())
                    confidence = round(float(probability[mask].mean()), 4) if area else ""
                    rows.append({"image": target.name, "area_px": area, "mean_confidence": confidence})
                bar.update(len(chunk))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        written.append(write_atomic(output_dir / "summary.csv", lambda t: t.write_text(text.getvalue())))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    return rows


@dataclass
class LargeImageResult:
    """Output of :func:`propagate_large_image`.

    Attributes:
        count: instances found.
        window: query window side (image pixels).
        stride, border: window step and down-weighted window border (image pixels).
        guide_side: guide crop side (image pixels); fusion: how the guides were combined.
        labels: ``(H, W)`` instance label image, or ``None`` when it was written to ``output``.
        output: the label TIFF written, if any.
        shape: image ``(height, width)``.
        guides: guide crops used; ``instances_annotated``: instances in all guide masks.
        opening_radius, min_area: the instance separation settings used.
        boundary: ``"intensity"`` (ring refinement calibrated on the guides) or ``"network"``; ring_radius,
            ring_weight: the refinement picked (radius 0: the guides showed no gain, none applied); guide_dice:
            pixel Dice on the guide images of the network and of the refinement.
    """

    count: int
    window: int
    labels: np.ndarray | None
    output: Path | None
    shape: tuple[int, int]
    guides: int
    instances_annotated: int
    opening_radius: int
    min_area: float
    stride: int = 0
    border: int = 0
    guide_side: int = 0
    fusion: str = "joint"
    boundary: str = "network"
    ring_radius: int = 0
    ring_weight: float = 1.0
    guide_dice: tuple[float, float] | None = None

    def summary(self) -> dict[str, object]:
        return {
            "count": self.count,
            "window": self.window,
            "stride": self.stride,
            "border": self.border,
            "guide_side": self.guide_side,
            "fusion": self.fusion,
            "shape": list(self.shape),
            "guides": self.guides,
            "instances_annotated": self.instances_annotated,
            "opening_radius": self.opening_radius,
            "min_area": round(self.min_area, 2),
            "boundary": self.boundary,
            "ring_radius": self.ring_radius,
            "ring_weight": self.ring_weight,
            "guide_dice": [round(v, 4) for v in self.guide_dice] if self.guide_dice else None,
            "output": str(self.output) if self.output else None,
        }


def propagate_large_image(
    image: str | os.PathLike | np.ndarray,
    guides: Guides | str | os.PathLike,
    network: torch.nn.Module,
    window: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    *,
    threshold: float = 0.5,
    opening_radius: int | None = None,
    min_area: float | None = None,
    max_guides: int = 2,
    window_scale: float = 2.0,
    progress: bool = False,
    scratch_dir: str | os.PathLike | None = None,
    border: int | None = None,
    fusion: str = "joint",
    boundary: str = "intensity",
) -> LargeImageResult:
    """Label every instance of the guides' kind in one large 2D image.

    Args:
        image: a path (TIFFs are read region by region, never whole) or a 2D / RGB array.
        guides: ``(image, mask)`` pairs or a guide folder / list file; each annotated instance (8-connected
            component of a mask) can become a guide crop.
        network: PropMask (``forward_indexed``, ``input_size``), in eval mode.
        window: query window side in pixels (default: ``QUERY_FACTOR`` x the guide crop side for PropMask, the
            guide crop side for networks run whole; see :mod:`pam_monai.images2d.sliding2d`).
        batch_size: windows per forward.
        output: write the label image here (``.tif``/``.tiff``, tiled BigTIFF, tile by tile) instead of
            returning it; intermediate arrays then live in memory-mapped scratch files beside it.
        threshold: foreground probability threshold.
        opening_radius: disk radius of the opening (default: median instance side / 20, 1..8).
        min_area: smallest instance kept (default: 10 % of the median annotated instance area).
        max_guides: most guide crops used.
        window_scale: guide crop side relative to the median instance side.
        progress: progress bar on stderr.
        scratch_dir: folder for the scratch files (default: the output's folder).
        border: down-weighted pixels at each window edge (default: a quarter of the guide crop side).
        fusion: ``"joint"`` (each window attends to all guides at once) or ``"mean"`` (average of the guides'
            probabilities).
        boundary: ``"intensity"``: refine the foreground in a thin ring around its boundary with the guides'
            object and background intensities, the ring and the network's weight picked on the guide images (the
            network run over each whole guide image; see :mod:`pam_monai.images2d.boundary2d`); ``"network"``:
            the thresholded probability as it is.
    """
    if boundary not in BOUNDARIES:
        raise Propagate2DError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}.")
    if window is not None and window < 16:
        raise Propagate2DError(f"the window must be at least 16 pixels, got {window}.")
    if batch_size < 1:
        raise Propagate2DError(f"batch size must be at least 1, got {batch_size}.")
    if max_guides < 1:
        raise Propagate2DError(f"at least one guide is needed, got max_guides={max_guides}.")
    if output is not None and image_suffix(output) not in (".tif", ".tiff"):
        raise Propagate2DError(f"{output}: the label image must be written as a TIFF (.tif or .tiff).")
    checked = load_guides(guides) if isinstance(guides, (str, os.PathLike)) else check_guides(guides)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    reader = open_region_reader(image)
    try:
        picked = instance_guides(
            checked,
            network_input_size(network),
            window,
            max_guides,
            window_scale,
            _device(network),
            query_factor=QUERY_FACTOR if splits_encoding(network) else 1,
            border=border,
        )
        radius = opening_radius if opening_radius is not None else max(1, min(8, round(picked.median_side / 20)))
        smallest = 0.1 * picked.median_area if min_area is None else float(min_area)
        shape = reader.shape
        with tempfile.TemporaryDirectory(
            prefix=".pam-scratch-", dir=scratch_dir or (Path(output).parent if output else None)
        ) as scratch:
            if output is None:
                foreground = np.zeros(shape, dtype=bool)
                provisional = np.zeros(shape, dtype=np.int32)
            else:
                foreground = np.lib.format.open_memmap(Path(scratch) / "fg.npy", "w+", np.uint8, shape)
                provisional = np.lib.format.open_memmap(Path(scratch) / "labels.npy", "w+", np.int32, shape)

            refinement = None
            if boundary == "intensity":
                refinement = guide_refinement(checked, network, picked, batch_size, fusion, threshold)

            def store(top: int, band: np.ndarray) -> None:
                foreground[top : top + band.shape[0]] = band

            if refinement is None:
                keep = lambda top, band: store(top, band > threshold)  # noqa: E731
            else:
                keep = RefiningStream(
                    refinement, lambda r0, r1: reader.read(r0, 0, r1 - r0, shape[1]), store, shape[0]
                ).push
            stitch_probability(reader, network, picked, keep, batch_size, progress, fusion)
            lut, count = label_instances(foreground, provisional, radius, smallest)
            dtype = np.uint16 if count < 2**16 else np.uint32
            lut = lut.astype(dtype)
            labels = None
            if output is None:
                labels = lut[provisional]
            else:
                write_label_tiff(output, shape, dtype, lambda r0, r1: lut[provisional[r0:r1]])
    finally:
        reader.close()
    return LargeImageResult(
        count=count,
        window=picked.window,
        labels=labels,
        output=Path(output) if output else None,
        shape=shape,
        guides=int(picked.batch.images.shape[0]),
        instances_annotated=picked.instances,
        opening_radius=radius,
        min_area=smallest,
        stride=picked.stride,
        border=picked.border,
        guide_side=int(picked.guide_side or picked.window),
        fusion=fusion,
        boundary=boundary,
        ring_radius=refinement.radius if refinement else 0,
        ring_weight=refinement.weight if refinement else 1.0,
        guide_dice=refinement.guide_dice if refinement else None,
    )
