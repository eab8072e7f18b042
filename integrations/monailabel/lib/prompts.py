"""Turn a MONAI Label infer request into a PAM prompt (pure numpy / scipy; no MONAI Label import).

Coordinates are voxel indices ``(x, y, z)`` = ``(i, j, k)`` of the image array as MONAI's ``LoadImage`` returns
it (file order), which is what MONAI Label's 3D Slicer and OHIF clients send.

Request keys (MONAI Label's names):

- ``roi`` = ``[x0, y0, x1, y1, z0, z1]`` (inclusive voxel indices), as MONAI Label's SAM2 app receives it. Flat
  along the propagation axis (``z0 == z1`` for ``axis=2``; ``x0 == x1`` for ``axis=0``; ``y0 == y1`` for
  ``axis=1``) it is a box on that slice: PAM turns it into a mask with Box2Mask and propagates. Not flat it is a
  3D box: PAM starts from three slices inside it and clips the result to it. ``roi = [r0, c0, r1, c1]`` with a
  ``slice`` key is a box on that slice in the slice's own (row, column) axes.
- ``foreground`` / ``background`` = ``[[x, y, z], ...]`` clicks. See :func:`grow_from_clicks`.
- ``label``: a path to a label image on the image grid, nonzero on one slice along the axis (values 1..N are N
  objects). If it marks several slices, a ``slice`` key picks one. A ``label`` that is not an existing file (the
  3D Slicer module sends the label *name* there) is ignored.
- ``axis``: the array axis normal to the prompt slice (0, 1 or 2; default 2).

Which prompt wins when several are sent: a label image, else a 3D box, else a box on a slice (refined by clicks
on that slice when there are any), else clicks alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pam_monai.prompts.clicks import ClickGrowing, cut_with_background, grow_from_clicks, keep_touching

__all__ = [
    "ClickGrowing",
    "PreparedPrompt",
    "PromptRequestError",
    "cut_with_background",
    "grow_from_clicks",
    "parse_axis",
    "parse_points",
    "parse_roi",
    "prepare_prompt",
]


class PromptRequestError(ValueError):
    """A request whose prompt cannot be used (answered with HTTP 400 and this message)."""


@dataclass
class PreparedPrompt:
    """What :meth:`PropagationInferer.propagate` needs, plus a JSON description for the response.

    ``kwargs`` holds exactly one of ``mask_prompt`` (an ``(X, Y, Z)`` uint8 array), ``box`` with ``slice_index``,
    or ``box3d``; and ``axis``. ``box2mask`` is a ``(plane, box)`` pair when a box must first become a mask so
    that clicks can refine it (the caller runs Box2Mask on ``plane`` and then calls :meth:`refine`).
    """

    kwargs: dict[str, Any]
    description: dict[str, Any]
    box2mask: tuple[np.ndarray, tuple[int, int, int, int]] | None = None
    refine_clicks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def refine(self, box_mask: np.ndarray, shape: tuple[int, int, int]) -> None:
        """Turn the Box2Mask mask of a box into the mask prompt, cut by the background clicks."""
        axis, index = self.kwargs["axis"], self.kwargs.pop("slice_index")
        box = self.kwargs.pop("box")
        mask = np.asarray(box_mask, dtype=bool)
        background = self.refine_clicks.get("background", [])
        if background:
            centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
            mask = cut_with_background(mask, [centre], background)
            mask = keep_touching(mask, [(round(centre[0]), round(centre[1]))]) if mask.any() else mask
        if not mask.any():
            raise PromptRequestError("the background clicks removed the whole object inside the box.")
        self.kwargs["mask_prompt"] = _volume_with_plane(mask, shape, axis, index)
        self.box2mask = None


def parse_axis(value: Any) -> int:
    """The propagation axis (0, 1 or 2) from a request value (int or numeric string; default 2)."""
    if isinstance(value, (list, tuple)):  # a client echoing the option list of /info/ means its first entry
        value = value[0] if value else None
    if value is None or value == "":
        return 2
    try:
        axis = int(str(value).strip())
    except ValueError:
        raise PromptRequestError(f"axis must be 0, 1 or 2, got {value!r}.") from None
    if axis not in (0, 1, 2) or str(value).strip() not in ("0", "1", "2"):
        raise PromptRequestError(f"axis must be 0, 1 or 2, got {value!r}.")
    return axis


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PromptRequestError(f"{what} must be a number, got {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise PromptRequestError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise PromptRequestError(f"{what} must be finite, got {value!r}.")
    return int(round(number))


def _plane_axes(axis: int) -> tuple[int, int]:
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


def parse_roi(roi: Any, shape: Sequence[int]) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """A 6-number ``roi`` as an inclusive 3D box ``(start, stop)`` in ``(i, j, k)``; ``None`` if absent.

    Each pair is sorted (a box dragged from right to left works). Raises :class:`PromptRequestError` when the box
    is malformed or reaches outside the image.
    """
    if roi is None or (isinstance(roi, (list, tuple)) and len(roi) == 0) or roi == "":
        return None
    if not isinstance(roi, (list, tuple)) or len(roi) != 6:
        raise PromptRequestError(
            f"roi must be [x0, y0, x1, y1, z0, z1] (6 voxel indices), got {roi!r}; "
            "or give 4 numbers [r0, c0, r1, c1] together with slice."
        )
    x0, y0, x1, y1, z0, z1 = (_as_int(v, "roi") for v in roi)
    start = (min(x0, x1), min(y0, y1), min(z0, z1))
    stop = (max(x0, x1), max(y0, y1), max(z0, z1))
    for a in range(3):
        if start[a] < 0 or stop[a] >= shape[a]:
            raise PromptRequestError(
                f"roi {list(roi)} lies outside the image of shape {tuple(int(s) for s in shape)} "
                f"(valid voxel indices 0..{shape[0] - 1}, 0..{shape[1] - 1}, 0..{shape[2] - 1})."
            )
    return start, stop


def parse_points(points: Any, shape: Sequence[int], what: str) -> list[tuple[int, int, int]]:
    """``[[x, y, z], ...]`` clicks as voxel index triples inside the image."""
    if points is None or points == "" or (isinstance(points, (list, tuple)) and len(points) == 0):
        return []
    if not isinstance(points, (list, tuple)):
        raise PromptRequestError(f"{what} must be a list of [x, y, z] voxel indices, got {points!r}.")
    parsed = []
    for point in points:
        if not isinstance(point, (list, tuple)) or len(point) != 3:
            raise PromptRequestError(f"each {what} click must be [x, y, z] (3 voxel indices), got {point!r}.")
        p = tuple(_as_int(v, f"{what} click") for v in point)
        if any(not 0 <= p[a] < shape[a] for a in range(3)):
            raise PromptRequestError(
                f"{what} click {list(point)} lies outside the image of shape {tuple(int(s) for s in shape)}."
            )
        parsed.append(p)  # type: ignore[arg-type]
    return parsed  # type: ignore[return-value]


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume, index, axis=axis)


def _volume_with_plane(mask: np.ndarray, shape: Sequence[int], axis: int, index: int, value: int = 1) -> np.ndarray:
    volume = np.zeros(tuple(int(s) for s in shape), dtype=np.uint8)
    selector: list[Any] = [slice(None)] * 3
    selector[axis] = index
    volume[tuple(selector)] = np.where(mask, value, 0).astype(np.uint8)
    return volume


def _in_plane(point: Sequence[int], axis: int) -> tuple[int, int]:
    rows, cols = _plane_axes(axis)
    return int(point[rows]), int(point[cols])


def _mask_from_label(
    path: str, image_shape: Sequence[int], axis: int, slice_index: int | None, loader: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        label = np.asarray(loader(path))
    except Exception as error:  # readers raise many types; the user needs the reason on one line
        raise PromptRequestError(
            f"cannot read the uploaded label image ({' '.join(str(error).split())[:200]})."
        ) from None
    while label.ndim > 3 and label.shape[0] == 1:
        label = label[0]
    if label.ndim != 3 or tuple(label.shape) != tuple(int(s) for s in image_shape):
        raise PromptRequestError(
            f"the uploaded label's grid {tuple(label.shape)} differs from the image's {tuple(image_shape)}; "
            "draw the mask on the image's own grid."
        )
    if not np.isfinite(label).all():
        raise PromptRequestError("the uploaded label contains NaN or infinite values.")
    values = np.rint(label).astype(np.int64)
    if (values < 0).any():
        raise PromptRequestError("the uploaded label has negative values; use 1..N for objects, 0 for background.")
    others = tuple(a for a in range(3) if a != axis)
    marked = np.nonzero((values > 0).any(axis=others))[0].tolist()
    if not marked:
        raise PromptRequestError("the uploaded label is empty: paint the object on one slice first.")
    if slice_index is not None:
        if slice_index not in marked:
            raise PromptRequestError(
                f"the uploaded label has nothing on slice {slice_index} of axis {axis} (it marks {marked[:10]})."
            )
        selector: list[Any] = [slice(None)] * 3
        selector[axis] = slice_index
        only = np.zeros_like(values)
        only[tuple(selector)] = values[tuple(selector)]
        values, marked = only, [slice_index]
    if len(marked) > 1:
        raise PromptRequestError(
            f"the uploaded label marks {len(marked)} slices along axis {axis} ({marked[0]}..{marked[-1]}); "
            "paint one slice, or send slice=<index> to pick one."
        )
    if values.max() > 255:
        raise PromptRequestError(f"the uploaded label has values up to {int(values.max())}; at most 255 objects.")
    objects = sorted(int(v) for v in np.unique(values) if v > 0)
    return values.astype(np.uint8), {"type": "label", "axis": axis, "slice": marked[0], "labels": objects}


def prepare_prompt(request: Mapping[str, Any], image: np.ndarray, label_loader: Any = None) -> PreparedPrompt:
    """Read the prompt of an infer request against the ``(X, Y, Z)`` image array.

    Args:
        request: the infer request (MONAI Label merges the ``params`` JSON into it).
        image: the image intensities, ``(X, Y, Z)``.
        label_loader: ``path -> array`` for an uploaded ``label`` (default: MONAI's ``LoadImage``).

    Raises:
        PromptRequestError: no prompt, or a prompt that does not fit the image (the message says why).
    """
    image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    axis = parse_axis(request.get("axis"))
    slice_value = request.get("slice")
    slice_index = None if slice_value in (None, "", -1, "-1") else _as_int(slice_value, "slice")
    if slice_index is not None and not 0 <= slice_index < shape[axis]:
        raise PromptRequestError(
            f"slice {slice_index} is out of range: axis {axis} has {shape[axis]} slices (0..{shape[axis] - 1})."
        )
    rows, cols = _plane_axes(axis)

    label = request.get("label")
    if isinstance(label, str) and label and os.path.isfile(label):
        if label_loader is None:
            from monai.transforms import LoadImage

            def label_loader(path: str) -> np.ndarray:
                return np.asarray(LoadImage(image_only=True, ensure_channel_first=False)(path))

        mask, description = _mask_from_label(label, shape, axis, slice_index, label_loader)
        return PreparedPrompt({"mask_prompt": mask, "axis": axis}, description)

    foreground = parse_points(request.get("foreground"), shape, "foreground")
    background = parse_points(request.get("background"), shape, "background")

    roi = request.get("roi")
    if isinstance(roi, (list, tuple)) and len(roi) == 4:
        if slice_index is None:
            raise PromptRequestError("a 4-number roi [r0, c0, r1, c1] needs slice=<index> (or send 6 numbers).")
        r0, c0, r1, c1 = (_as_int(v, "roi") for v in roi)
        start = [0, 0, 0]
        stop = [0, 0, 0]
        start[axis] = stop[axis] = slice_index
        start[rows], stop[rows] = min(r0, r1), max(r0, r1)
        start[cols], stop[cols] = min(c0, c1), max(c0, c1)
        roi = [start[0], start[1], stop[0], stop[1], start[2], stop[2]]
    box3d = parse_roi(roi, shape)

    if box3d is not None:
        start, stop = box3d
        box = (start[rows], start[cols], stop[rows], stop[cols])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise PromptRequestError(
                f"roi {list(request.get('roi'))} has zero area on the slice: it must span at least 2 voxels "
                f"along axes {rows} and {cols}."
            )
        if start[axis] != stop[axis]:
            if foreground or background:
                ignored = {"ignored": "clicks are not used with a 3D box"}
            else:
                ignored = {}
            return PreparedPrompt(
                {"box3d": (*start, *stop), "axis": axis},
                {"type": "box3d", "axis": axis, "box3d": [*start, *stop], **ignored},
            )
        index = start[axis]
        on_slice = [p for p in foreground if p[axis] == index]
        off_slice = [p for p in background if p[axis] == index]
        description = {"type": "box", "axis": axis, "slice": index, "box": list(box)}
        if on_slice:
            plane = _plane(image, axis, index)
            mask = grow_from_clicks(
                plane, [_in_plane(p, axis) for p in on_slice], [_in_plane(p, axis) for p in off_slice], limit=box
            )
            description.update(type="box+clicks", foreground=len(on_slice), background=len(off_slice))
            return PreparedPrompt(
                {"mask_prompt": _volume_with_plane(mask, shape, axis, index), "axis": axis}, description
            )
        prepared = PreparedPrompt({"box": box, "slice_index": index, "axis": axis}, description)
        if off_slice:
            prepared.box2mask = (_plane(image, axis, index), box)
            prepared.refine_clicks = {"background": [_in_plane(p, axis) for p in off_slice]}
            description.update(type="box+clicks", background=len(off_slice))
        return prepared

    if foreground:
        # The most recent foreground click (clients append) chooses the slice; clicks elsewhere are not used.
        index = slice_index if slice_index is not None else foreground[-1][axis]
        on_slice = [p for p in foreground if p[axis] == index]
        if not on_slice:
            raise PromptRequestError(f"no foreground click lies on slice {index} of axis {axis}.")
        back = [p for p in background if p[axis] == index]
        plane = _plane(image, axis, index)
        mask = grow_from_clicks(plane, [_in_plane(p, axis) for p in on_slice], [_in_plane(p, axis) for p in back])
        description = {
            "type": "clicks",
            "axis": axis,
            "slice": index,
            "foreground": len(on_slice),
            "background": len(back),
            "prompt_pixels": int(mask.sum()),
        }
        unused = len(foreground) - len(on_slice) + len(background) - len(back)
        if unused:
            description["clicks_on_other_slices_ignored"] = unused
        mode = request.get("click_mode") or "grow"
        mode = (mode[0] if mode else "grow") if isinstance(mode, (list, tuple)) else mode
        if str(mode).lower() == "box":
            # The grown region's bounding box, widened by 10 % (at least 2 voxels) each way, goes to Box2Mask.
            rr, cc = np.nonzero(mask)
            pad_r = max(2, int(round(0.1 * (rr.max() - rr.min() + 1))))
            pad_c = max(2, int(round(0.1 * (cc.max() - cc.min() + 1))))
            box = (
                max(int(rr.min()) - pad_r, 0),
                max(int(cc.min()) - pad_c, 0),
                min(int(rr.max()) + pad_r, shape[rows] - 1),
                min(int(cc.max()) + pad_c, shape[cols] - 1),
            )
            description.update(type="clicks->box", box=list(box))
            return PreparedPrompt({"box": box, "slice_index": index, "axis": axis}, description)
        return PreparedPrompt({"mask_prompt": _volume_with_plane(mask, shape, axis, index), "axis": axis}, description)

    if background:
        raise PromptRequestError("background clicks alone are not a prompt: add a foreground click or a box (roi).")
    raise PromptRequestError(
        "no prompt: send a box as roi=[x0, y0, x1, y1, z0, z1] (z0 == z1 on the slice), foreground clicks "
        "[[x, y, z], ...], or a label image painted on one slice (multipart field 'label')."
    )
