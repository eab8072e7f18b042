"""One prompt form for every front end: the CLI's prompt files, the bundle's ``prompt``, MONAI Label and Deploy.

:func:`parse_prompt` turns a path, JSON text or mapping into checked keyword arguments (see its docstring for the
fields); :func:`load_prompt_files` then reads the images it names (a mask prompt, a previous result) onto the
image's grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pam_monai.errors import PromptError
from pam_monai.prompts.core import place_on_grid, plane_axes, read_mask_prompt

__all__ = ["PROMPT_FIELDS", "load_prompt_files", "parse_clicks", "parse_prompt"]

PROMPT_FIELDS = ("mask", "box", "slice", "slice_index", "boxes", "box3d", "clicks", "previous", "axis", "label")
"""The fields a prompt mapping may have."""


def _ints(values: Any, count: int | None, what: str) -> tuple[int, ...]:
    """``values`` as integers (``count`` of them when given), or a one-line :class:`PromptError`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise PromptError(f"{what} must be a list of integers, got {values!r}.")
    out = []
    for v in values:
        numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        if not numeric or not float(v).is_integer():
            raise PromptError(f"{what} must be a list of integers, got {list(values)!r}.")
        out.append(int(v))
    if count is not None and len(out) != count:
        raise PromptError(f"{what} needs {count} integers, got {len(out)}.")
    return tuple(out)


def _int(value: Any, what: str) -> int:
    return _ints([value], 1, what)[0]


def parse_clicks(clicks: Any) -> list[tuple[int, int, int, int]]:
    """Foreground/background clicks ``[[i, j, k, +1 | -1], ...]`` (voxel indices; a missing sign is ``+1``; the
    sign may also be ``"+"`` / ``"-"``) as ``(i, j, k, sign)`` tuples.

    Raises:
        PromptError: if the list is empty or a click is not 3 integers and a sign.
    """
    if isinstance(clicks, (str, bytes)) or not isinstance(clicks, Sequence) or not clicks:
        raise PromptError(f"clicks must be a non-empty list of [i, j, k, +1 or -1], got {clicks!r}.")
    out = []
    for click in clicks:
        if isinstance(click, (str, bytes)) or not isinstance(click, Sequence) or len(click) not in (3, 4):
            raise PromptError(f"a click is [i, j, k] or [i, j, k, +1 or -1], got {click!r}.")
        sign: Any = click[3] if len(click) == 4 else 1
        sign = {"+": 1, "-": -1, "+1": 1, "-1": -1}.get(sign, sign) if isinstance(sign, str) else sign
        if isinstance(sign, bool) or sign not in (1, -1):
            raise PromptError(f"a click's sign must be +1 (foreground) or -1 (background), got {click[3]!r}.")
        i, j, k = _ints(list(click[:3]), 3, f"click {list(click)!r}")
        out.append((i, j, k, int(sign)))
    return out


def _read_spec(prompt: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any] | str:
    """The prompt's mapping, or the path of a prompt image / ROI markup as a plain string."""
    if isinstance(prompt, Mapping):
        return dict(prompt)
    text = str(prompt).strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            raise PromptError(f"the prompt is not valid JSON: {error.msg} at character {error.pos}.") from None
    elif text.endswith(".mrk.json"):
        return text
    elif text.endswith(".json"):
        try:
            spec = json.loads(Path(text).read_text())
        except FileNotFoundError:
            raise PromptError(f"{text}: no such prompt file.") from None
        except json.JSONDecodeError as error:
            raise PromptError(f"{text}: not valid JSON ({error.msg}, line {error.lineno}).") from None
    elif text:
        return text
    else:
        raise PromptError("no prompt given: pass a mask-prompt image, or a box as JSON.")
    if not isinstance(spec, dict):
        raise PromptError('the prompt JSON must be an object such as {"box": [i0, j0, i1, j1], "slice": k}.')
    return spec


def parse_prompt(prompt: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Turn a prompt (CLI prompt file, bundle ``prompt``, MONAI Label / Deploy request) into checked keywords.

    ``prompt`` is a path to a mask-prompt image, a path to a 3D Slicer ROI markup ``*.mrk.json``, a path to a JSON
    file, JSON text, or a mapping with these fields (voxel indices of the image array in file order):

    - ``mask``: path of a label image on the image's grid, nonzero on any slices normal to ``axis`` (label values
      are objects; every marked slice is a guide). A mapping may hold the ``(X, Y, Z)`` array itself.
    - ``box`` + ``slice``: an inclusive in-plane box ``[r0, c0, r1, c1]`` on slice ``slice`` (a list of slices puts
      the same box on each); ``boxes``: ``[{"box": [...], "slice": k}, ...]`` for boxes on several slices.
    - ``box3d``: an inclusive 3D box ``[i0, j0, k0, i1, j1, k1]`` (alone).
    - ``clicks``: ``[[i, j, k, +1 | -1], ...]`` foreground (+1) / background (-1) clicks correcting a result.
    - ``previous``: path of a previous result (label image) to correct, or the array itself in a mapping.
    - ``axis`` (default 2): the array axis normal to the prompt slices; ``label``: the object's label value for
      boxes and clicks (a mask brings its own).

    Masks and boxes may be mixed. ``previous`` goes with corrections (``mask``, boxes, ``clicks``); ``clicks``
    need a result to correct (``previous``, or a session the caller keeps).

    Returns:
        ``axis`` and, as given: ``mask_prompt_path`` (or ``mask_prompt``), ``roi_path``, ``box`` + ``slice_index``
        (one box), ``boxes`` (``[(box, slice), ...]``, several), ``box3d``, ``clicks`` (``[(i, j, k, sign), ...]``),
        ``previous_path`` (or ``previous``) and ``label``. A bare path returns ``{"mask_prompt_path": ...}`` or
        ``{"roi_path": ...}`` (the ROI needs the image's grid: see :mod:`pam_monai.prompts.slicer_roi`).

    Raises:
        PromptError: for invalid JSON, unknown fields, a missing file, or a combination that is not a prompt.
    """
    spec = _read_spec(prompt)
    if isinstance(spec, str):
        if spec.endswith(".mrk.json"):
            return {"roi_path": spec}
        if not Path(spec).exists():
            raise PromptError(f"{spec}: no such prompt file.")
        return {"mask_prompt_path": spec}
    unknown = set(spec) - set(PROMPT_FIELDS)
    if unknown:
        raise PromptError(f"unknown prompt fields {sorted(unknown)}; use {', '.join(PROMPT_FIELDS)}.")
    axis = _int(spec.get("axis", 2), "axis")
    plane_axes(axis)
    out: dict[str, Any] = {"axis": axis}
    for field, key in (("mask", "mask_prompt"), ("previous", "previous")):
        if spec.get(field) is None:
            continue
        value = spec[field]
        if isinstance(value, (str, os.PathLike)):
            out[f"{key}_path"] = str(value)
        elif isinstance(value, (np.ndarray, torch.Tensor)):
            out[key] = value
        else:
            raise PromptError(f"the prompt's {field} must be the path of a label image, got {type(value).__name__}.")
    if "box" in spec:
        box = _ints(spec["box"], 4, "box")
        index = spec.get("slice", spec.get("slice_index"))
        if index is None:
            raise PromptError('a box prompt needs its slice: {"box": [...], "slice": k}.')
        if isinstance(index, Sequence) and not isinstance(index, (str, bytes)):
            out["boxes"] = [(box, k) for k in _ints(index, None, "slice")]
        else:
            out["box"], out["slice_index"] = box, _int(index, "slice")
    elif spec.get("slice", spec.get("slice_index")) is not None:
        raise PromptError('"slice" goes with "box"; for several boxes use "boxes": [{"box": [...], "slice": k}].')
    if "boxes" in spec:
        if "box" in spec:
            raise PromptError('give "box" + "slice" or "boxes", not both.')
        entries = spec["boxes"]
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
            raise PromptError('boxes must be a non-empty list of {"box": [r0, c0, r1, c1], "slice": k}.')
        boxes = []
        for entry in entries:
            if isinstance(entry, Mapping):
                if "box" not in entry or entry.get("slice", entry.get("slice_index")) is None:
                    raise PromptError(f'each of boxes needs "box" and "slice", got {dict(entry)!r}.')
                boxes.append(
                    (_ints(entry["box"], 4, "box"), _int(entry.get("slice", entry.get("slice_index")), "slice"))
                )
            else:
                box_and_slice = list(entry) if isinstance(entry, Sequence) and not isinstance(entry, str) else []
                if len(box_and_slice) != 2:
                    raise PromptError(f'each of boxes is {{"box": [r0, c0, r1, c1], "slice": k}}, got {entry!r}.')
                boxes.append((_ints(box_and_slice[0], 4, "box"), _int(box_and_slice[1], "slice")))
        out["boxes"] = boxes
    if "box3d" in spec:
        out["box3d"] = _ints(spec["box3d"], 6, "box3d")
    if "clicks" in spec:
        out["clicks"] = parse_clicks(spec["clicks"])
    if "label" in spec:
        out["label"] = _int(spec["label"], "label")
        if not 1 <= out["label"] <= 32767:
            raise PromptError(f"label must be 1..32767, got {out['label']}.")
    has_mask = "mask_prompt_path" in out or "mask_prompt" in out
    has_boxes = "box" in out or "boxes" in out
    has_previous = "previous_path" in out or "previous" in out
    if "box3d" in out and (has_mask or has_boxes or "clicks" in out or has_previous):
        raise PromptError("a 3D box is a prompt on its own: give box3d without mask, boxes, clicks or previous.")
    if not (has_mask or has_boxes or "box3d" in out or "clicks" in out):
        raise PromptError(
            "give a prompt: mask, box with slice, boxes, box3d, or clicks (with previous) to correct a result."
            if not has_previous
            else "previous needs a correction: mask, box with slice, boxes or clicks."
        )
    return out


def load_prompt_files(
    args: Mapping[str, Any],
    shape: tuple[int, ...],
    affine: np.ndarray | torch.Tensor | None = None,
    base: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Read the images a parsed prompt names onto the image's grid: ``mask_prompt_path`` -> ``mask_prompt`` and
    ``previous_path`` -> ``previous`` (``(X, Y, Z)`` label tensors); check clicks lie inside the image.

    Args:
        args: :func:`parse_prompt`'s output (not modified).
        shape: the image's ``(X, Y, Z)``.
        affine: the image's voxel-to-world matrix (without it the files must have ``shape``).
        base: folder that relative paths are relative to (e.g. the prompt file's folder).

    Raises:
        PromptError: a missing file, a file on another grid, or a click outside the image.
    """
    out = dict(args)
    for i, j, k, _ in out.get("clicks", ()):
        if not all(0 <= v < n for v, n in zip((i, j, k), shape)):
            raise PromptError(f"click ({i}, {j}, {k}) lies outside the image of shape {tuple(shape)}.")
    for key in ("mask_prompt", "previous"):
        path = out.pop(f"{key}_path", None)
        if path is None:
            if key in out:  # an array given in a mapping must be on the image's grid already
                array = torch.as_tensor(np.asarray(out[key]) if not isinstance(out[key], torch.Tensor) else out[key])
                array = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
                if tuple(array.shape) != tuple(shape):
                    what = key.replace("_", " ")
                    raise PromptError(
                        f"the {what}'s grid {tuple(array.shape)} differs from the image's {tuple(shape)}."
                    )
                out[key] = array
            continue
        resolved = Path(path)
        if base is not None and not resolved.is_absolute() and not resolved.exists():
            resolved = Path(base) / resolved
        if not resolved.exists():
            raise PromptError(f"{path}: no such {'previous result' if key == 'previous' else 'mask prompt'} file.")
        if key == "previous":  # a result is saved on the image's grid: the same shape, not a crop of it
            # late: io reads other formats than NIfTI with MONAI; a 3D NIfTI with nibabel alone (no MONAI import)
            from pam_monai.data.io import load_volume

            volume, volume_affine = load_volume(resolved)
            grid = tuple(volume.shape[-3:])
            if grid != tuple(shape) or (volume.ndim == 4 and volume.shape[0] != 1):
                raise PromptError(f"{path}: the previous result's grid {grid} differs from the image's {tuple(shape)}.")
            if affine is not None:
                out[key] = place_on_grid(volume.reshape(grid), volume_affine, shape, affine, str(path))
            else:
                out[key] = volume.reshape(grid)
        else:
            out[key] = read_mask_prompt(resolved, tuple(shape), affine)
    return out
