"""A MONAI Label infer request, as the 3D Slicer MONAI Label module (and OHIF) sends it, as PAM prompts.

Coordinates are voxel indices ``(i, j, k)`` of the image array in file order (what MONAI's ``LoadImage`` returns;
3D Slicer's RAS -> IJK matrix gives the same indices). The request keys (MONAI Label merges the ``params`` JSON
into the request):

- ``roi``: 3D Slicer's ROI tool sends ``[i0, i1, j0, j1, k0, k1]``, a (min, max) pair per axis: each pair is the
  ROI's two RAS corners mapped to IJK and rounded, so a pair may be reversed (an axis the RAS -> IJK matrix flips)
  and may reach outside the image. Pairs are sorted and clipped to the image. An ROI one slice thin along exactly
  one axis is a 2D box on that slice, along that axis (``axis`` need not be given); otherwise it is a 3D box.
  ``[]`` (no ROI placed) means no ROI. ``[r0, c0, r1, c1]`` with a ``slice`` key is a box on that slice in the
  slice's own (row, column) axes.
- ``foreground`` / ``background``: ``[[i, j, k], ...]`` clicks. 3D Slicer re-sends every click of the segment on
  every update (for a 3D model), in the order they were placed. The clicks are grouped by slice along ``axis`` in
  the order each slice was first clicked (:func:`click_steps`): without another prompt, the slice of the first
  foreground click is grown into the first mask (:func:`~pam_monai.prompts.clicks.grow_from_clicks`) and every
  other clicked slice is a correction of the result on that slice
  (:func:`~pam_monai.prompts.clicks.correct_plane`); with a box or a label, every clicked slice is a correction.
- an uploaded ``label`` image (the multipart field ``label``; 3D Slicer's scribbles tool sends the visible segments
  there, with ``label_info = [{"name": ..., "id": ...}, ...]`` and ``selected_label_name``): a mask prompt; every
  slice it marks along ``axis`` is a guide. With ``label_info``, only the segment named by ``selected_label_name``
  (or the ``label`` name) is used, as object 1. An empty one leaves the prompt to ``roi`` and the clicks. A
  ``label`` value that was not uploaded with the request (3D Slicer sends the segment's *name* there) is a name,
  never a path to open.
- ``axis`` (0, 1 or 2; default 2), and ``slice`` to pick one slice of a label (or of a 4-number roi).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pam_monai.errors import PromptError
from pam_monai.prompts.core import plane_axes
from pam_monai.prompts.parse import parse_prompt

__all__ = [
    "RequestPrompt",
    "click_steps",
    "parse_axis",
    "read_request",
    "request_clicks",
    "roi_prompt_from_bounds",
    "select_segment",
    "slicer_roi_bounds",
]


def parse_axis(value: Any) -> int:
    """The propagation axis (0, 1 or 2) from a request value (int or numeric string; default 2)."""
    if isinstance(value, (list, tuple)):  # a client echoing the option list of /info/ means its first entry
        value = value[0] if value else None
    if value is None or value == "":
        return 2
    text = str(value).strip()
    if text not in ("0", "1", "2"):
        raise PromptError(f"axis must be 0, 1 or 2, got {value!r}.")
    return int(text)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.integer, np.floating)):
        raise PromptError(f"{what} must be a number, got {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise PromptError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise PromptError(f"{what} must be finite, got {value!r}.")
    return int(round(number))


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, tuple)) and len(value) == 0)


def slicer_roi_bounds(roi: Any, shape: Sequence[int]) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """3D Slicer's ``roi = [i0, i1, j0, j1, k0, k1]`` as an inclusive ``(start, stop)`` box inside the image.

    Args:
        roi: six voxel indices, a (min, max) pair per array axis; either number of a pair may be the larger.
        shape: the image's ``(X, Y, Z)``.

    Returns:
        ``None`` for an empty ``roi``, else ``(start, stop)`` clipped to the image.

    Raises:
        PromptError: not six numbers, or a box that misses the image.
    """
    if _empty(roi):
        return None
    if not isinstance(roi, (list, tuple)) or len(roi) != 6:
        raise PromptError(
            f"roi must be [i0, i1, j0, j1, k0, k1] (3D Slicer's ROI: a min/max voxel pair per axis), got {roi!r}; "
            "or give 4 numbers [r0, c0, r1, c1] together with slice."
        )
    values = [_as_int(v, "roi") for v in roi]
    start, stop = [], []
    for a in range(3):
        low, high = sorted(values[2 * a : 2 * a + 2])
        if high < 0 or low > shape[a] - 1:
            raise PromptError(
                f"roi {list(roi)} lies outside the image: voxels {low}..{high} along axis {a}, "
                f"the image has 0..{shape[a] - 1}."
            )
        start.append(max(low, 0))
        stop.append(min(high, shape[a] - 1))
    return (start[0], start[1], start[2]), (stop[0], stop[1], stop[2])


def roi_prompt_from_bounds(start: Sequence[int], stop: Sequence[int], axis: int) -> dict[str, Any]:
    """A box on a slice when the box is one slice thin along one axis (that axis wins), else a 3D box.

    Returns:
        ``{"box": [r0, c0, r1, c1], "slice": k, "axis": a}`` or ``{"box3d": [i0, j0, k0, i1, j1, k1], "axis": axis}``
        (the fields of :func:`~pam_monai.prompts.parse_prompt`).

    Raises:
        PromptError: a box thin along several axes (no area on any slice).
    """
    flat = [a for a in range(3) if start[a] == stop[a]]
    if len(flat) > 1:
        raise PromptError(
            f"the roi {list(start)}..{list(stop)} is one voxel thin along axes {flat}: draw a box with an area on a "
            "slice."
        )
    if not flat:
        return {"box3d": [*start, *stop], "axis": axis}
    axis = flat[0]
    rows, cols = plane_axes(axis)
    return {"box": [start[rows], start[cols], stop[rows], stop[cols]], "slice": int(start[axis]), "axis": axis}


def request_clicks(foreground: Any, background: Any, shape: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """The request's ``foreground`` then ``background`` clicks as ``(i, j, k, +1 | -1)``, each list in its order.

    Raises:
        PromptError: a click that is not three numbers, or lies outside the image.
    """
    out = []
    for points, sign, what in ((foreground, 1, "foreground"), (background, -1, "background")):
        if _empty(points):
            continue
        if not isinstance(points, (list, tuple)):
            raise PromptError(f"{what} must be a list of [i, j, k] voxel indices, got {points!r}.")
        for point in points:
            if not isinstance(point, (list, tuple)) or len(point) != 3:
                raise PromptError(f"each {what} click must be [i, j, k] (3 voxel indices), got {point!r}.")
            i, j, k = (_as_int(v, f"{what} click") for v in point)
            if not all(0 <= v < n for v, n in zip((i, j, k), shape)):
                raise PromptError(
                    f"{what} click {list(point)} lies outside the image of shape {tuple(int(s) for s in shape)}."
                )
            out.append((i, j, k, sign))
    return out


def click_steps(
    clicks: Sequence[tuple[int, int, int, int]], axis: int
) -> list[tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]]:
    """Clicks grouped by slice along ``axis``: ``(slice, positive (row, col)s, negative (row, col)s)`` per slice,
    slices in the order of their first click (foreground clicks first, as 3D Slicer lists them)."""
    rows, cols = plane_axes(axis)
    order: list[int] = []
    groups: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
    for click in clicks:
        index = int(click[axis])
        if index not in groups:
            order.append(index)
            groups[index] = ([], [])
        groups[index][0 if click[3] > 0 else 1].append((int(click[rows]), int(click[cols])))
    return [(k, tuple(groups[k][0]), tuple(groups[k][1])) for k in order]


def select_segment(label: np.ndarray, request: Mapping[str, Any]) -> tuple[np.ndarray, str | None]:
    """The objects of an uploaded label image: with ``label_info``, the selected segment alone as object 1.

    The segment is the one named by ``selected_label_name`` (3D Slicer's scribbles tool), else by a ``label`` name.

    Returns:
        the ``(X, Y, Z)`` integer label volume, and the segment's name (``None`` when all values are kept).

    Raises:
        PromptError: ``label_info`` that is not a list of ``{"name", "id"}``, or names no segment of the request.
    """
    info = request.get("label_info")
    if _empty(info):
        return label, None
    if not isinstance(info, list) or not all(isinstance(e, Mapping) and "name" in e and "id" in e for e in info):
        raise PromptError(f'label_info must be a list of {{"name": ..., "id": ...}}, got {info!r}.')
    name = request.get("selected_label_name") or request.get("label")
    ids = {str(e["name"]): _as_int(e["id"], "label_info id") for e in info}
    if not isinstance(name, str) or name not in ids:
        raise PromptError(
            f"the uploaded label's segments are {sorted(ids)}; name the one to segment with selected_label_name."
        )
    return (np.rint(label) == ids[name]).astype(np.uint8), name


@dataclass(kw_only=True)
class RequestPrompt:
    """A request read against its image.

    Attributes:
        axis: the propagation axis.
        base: the first prompt as :func:`~pam_monai.prompts.parse_prompt` fields (``box`` + ``slice``, ``box3d`` or
            ``mask`` (an ``(X, Y, Z)`` uint8 array)); ``None`` when clicks alone start the object.
        clicks: every click, ``(i, j, k, +1 | -1)``.
        segment: the object's name (3D Slicer's segment name) for sessions; ``None`` if not sent.
        client: the client id and MONAI Label session id, for sessions.
        description: a JSON description of the prompt for the response.
        args: ``base`` checked by :func:`~pam_monai.prompts.parse_prompt`: keywords of
            :meth:`pam_monai.predictor.PAMPredictor.segment` (empty without a base).
    """

    axis: int
    base: dict[str, Any] | None
    clicks: list[tuple[int, int, int, int]] = field(default_factory=list)
    segment: str | None = None
    client: tuple[str, str] = ("", "")
    description: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)

    def steps(self) -> list[tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]]:
        """The clicks grouped by slice (:func:`click_steps`)."""
        return click_steps(self.clicks, self.axis)


def _label_base(label: np.ndarray, request: Mapping[str, Any], shape: tuple[int, ...], axis: int) -> dict[str, Any]:
    label = np.asarray(label)
    while label.ndim > 3 and label.shape[0] == 1:
        label = label[0]
    if tuple(label.shape) != shape:
        raise PromptError(
            f"the uploaded label's grid {tuple(label.shape)} differs from the image's {shape}; "
            "paint the mask on the image's own grid."
        )
    if not np.isfinite(label).all():
        raise PromptError("the uploaded label contains NaN or infinite values.")
    values, name = select_segment(label, request)
    values = np.rint(values).astype(np.int64)
    if (values < 0).any() or values.max(initial=0) > 255:
        raise PromptError("the uploaded label's values must be 0 (background) and 1..255 (objects).")
    others = tuple(a for a in range(3) if a != axis)
    marked = np.nonzero((values > 0).any(axis=others))[0].tolist()
    if not marked:  # e.g. 3D Slicer's scribbles tool uploading an empty segment with its roi
        return {"mask": values.astype(np.uint8), "axis": axis, "slices": [], "segment": name}
    slice_value = request.get("slice")
    if not _empty(slice_value) and slice_value not in (-1, "-1"):
        index = _as_int(slice_value, "slice")
        if index not in marked:
            raise PromptError(
                f"the uploaded label has nothing on slice {index} of axis {axis} (it marks {marked[:10]})."
            )
        keep = np.zeros_like(values)
        np.moveaxis(keep, axis, 0)[index] = np.moveaxis(values, axis, 0)[index]
        values, marked = keep, [index]
    return {"mask": values.astype(np.uint8), "axis": axis, "slices": marked, "segment": name}


def read_request(
    request: Mapping[str, Any], shape: Sequence[int], *, uploaded_label: np.ndarray | None = None
) -> RequestPrompt:
    """Read the prompt of an infer request against an image of ``shape``.

    Args:
        request: the infer request (MONAI Label merges the ``params`` JSON into it).
        shape: the image's ``(X, Y, Z)``.
        uploaded_label: the label image uploaded with this request, read by the caller; a ``label`` value in
            ``request`` is only ever a segment name.

    Raises:
        PromptError: no prompt, or a prompt that does not fit the image (the message says why).
    """
    shape = tuple(int(s) for s in shape)
    axis = parse_axis(request.get("axis"))
    clicks = request_clicks(request.get("foreground"), request.get("background"), shape)
    name = request.get("label") if isinstance(request.get("label"), str) and uploaded_label is None else None
    session = request.get("session")
    # MONAI Label puts the session's JSON (its id under "name") in the request when session_id is in the query.
    session_id = session.get("name") if isinstance(session, Mapping) else request.get("session_id")
    client = (str(request.get("client_id") or ""), str(session_id or ""))
    description: dict[str, Any] = {"axis": axis}
    base: dict[str, Any] | None = None
    roi = request.get("roi")
    found = _label_base(uploaded_label, request, shape, axis) if uploaded_label is not None else None
    if found is not None and found["slices"]:
        name = found.pop("segment") or name
        description.update(type="label", slices=found.pop("slices"))
        base = found
    elif found is not None and _empty(roi) and not clicks:
        what = f" for segment {found['segment']!r}" if found["segment"] else ""
        raise PromptError(f"the uploaded label is empty{what}: paint the object, or send a roi or clicks.")
    elif isinstance(roi, (list, tuple)) and len(roi) == 4:
        if _empty(request.get("slice")):
            raise PromptError("a 4-number roi [r0, c0, r1, c1] needs slice=<index> (or send 3D Slicer's 6 numbers).")
        index = _as_int(request["slice"], "slice")
        if not 0 <= index < shape[axis]:
            raise PromptError(f"slice {index} is out of range: axis {axis} has {shape[axis]} slices.")
        r0, c0, r1, c1 = (_as_int(v, "roi") for v in roi)
        base = {"box": [min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)], "slice": index, "axis": axis}
    else:
        bounds = slicer_roi_bounds(roi, shape)
        if bounds is not None:
            base = roi_prompt_from_bounds(*bounds, axis)
    if base is not None and "box" in base:
        rows, cols = plane_axes(base["axis"])
        box = base["box"]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise PromptError(
                f"roi {list(request.get('roi') or [])} has no area on slice {base['slice']}: it must span at least "
                f"2 voxels along axes {rows} and {cols}."
            )
        description.update(type="box", axis=base["axis"], slice=base["slice"], box=list(box))
    elif base is not None and "box3d" in base:
        description.update(type="box3d", box3d=list(base["box3d"]))
    if base is not None:
        axis = base["axis"]
    elif not clicks:
        raise PromptError(
            "no prompt: send 3D Slicer's roi [i0, i1, j0, j1, k0, k1], foreground clicks [[i, j, k], ...], or upload "
            "a label image painted on one or more slices (multipart field 'label')."
        )
    elif not any(c[3] > 0 for c in clicks):
        raise PromptError("background clicks alone are not a prompt: add a foreground click or a box (roi).")
    else:
        description.update(type="clicks")
    if clicks:
        description.update(foreground=sum(c[3] > 0 for c in clicks), background=sum(c[3] < 0 for c in clicks))
        description["type"] = description["type"] + "+clicks" if base is not None else "clicks"
    return RequestPrompt(
        axis=axis,
        base=base,
        clicks=clicks,
        segment=name,
        client=client,
        description=description,
        args=parse_prompt(base) if base is not None else {},
    )
