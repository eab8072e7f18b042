"""Finding a guide's object in another image by normalised cross-correlation over positions, sizes and angles.

The guide's object with a thin rim (:data:`MATCH_ROI_SCALE` x its mask's bounding box, square) is the template.
For every relative size in :data:`MATCH_SCALES` the query is resized by ``1 / size``, and for every angle in
:data:`MATCH_ANGLES` the template is resampled from the guide turned by that angle about the object's centre (the
template's corners show the guide's own pixels); the correlation at every position is scikit-image's
``match_template``'s, with the resized query's Fourier transform shared by all angles. The best position, size and
angle make the :class:`Placement` (``guide pixel -> query pixel``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import fft, ndimage

from pam_monai.errors import Propagate2DError
from pam_monai.transforms.functional import RoIWindow, crop_resize, square_roi

__all__ = [
    "MATCH_ANGLES",
    "MATCH_ROI_SCALE",
    "MATCH_SCALES",
    "MATCH_SIDE",
    "MATCH_TURN_MARGIN",
    "Placement",
    "match_object",
    "rotation",
]

MATCH_SCALES = tuple(float(s) for s in np.geomspace(0.6, 1.6, 11))
"""Object sizes in the query relative to the guide that :func:`match_object` tries (steps of 10 %; a grid through 1,
0.6..1/0.6, measured lower on the cross-image benchmark: 0.561 against 0.570 mean DSC). With the angles of
:data:`MATCH_ANGLES` a wider range, 0.4..2.5 in 20 steps, gave 0.567 (turn margin 0.05) and 0.538 (margin 0.1)
against 0.568 over the 102 validation cases: better on the atlas axis 1 sets, worse on axes 0 and 2 and on the
generated pairs with the margin of 0.1, at 2 x the time."""

MATCH_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(0, 360, 30))
"""Angles (degrees, counter-clockwise as displayed, rows down) by which :func:`match_object` turns the template:
every 30 degrees. On the validation split of the cross-image benchmark (PAM localised by the match, with
:data:`MATCH_TURN_MARGIN` 0.1) the generated pairs (objects turned by any angle) went from 0.107 / 0.219 mean DSC
(1 / 3 guides, upright only) to 0.215 / 0.331, every atlas set unchanged, all 102 cases 0.529 -> 0.568, at about
3 x the time per case (0.26 -> 0.74 s); every 20 degrees 0.567, every 45 degrees 0.532."""

MATCH_TURN_MARGIN = 0.1
"""How much higher the correlation of a turned template must be than the upright one's for :func:`match_object` to
keep the turned match. On brain slices of two templates turned matches (at smaller sizes) correlated up to 0.056
higher than the upright ones for three validation structures along axis 0, and PropMask's DSC there fell from
0.68-0.82 to 0 without a margin. On the validation split of the cross-image benchmark a margin of 0.05 lost 0.074
on the atlas axis 0, 3-guide set (0.757 -> 0.683) for 0.572 against 0.568 over all 102 cases; 0.075 and 0.1 keep
every atlas set as it was upright."""

MATCH_ROI_SCALE = 1.1
"""Side of the template :func:`match_object` matches, relative to the guide mask's bounding box: the object and a
thin rim (on the validation split of the cross-image benchmark 0.529 mean DSC against 0.495 with the crops' 1.5 x
RoI, 0.512 with the bare box)."""

MATCH_SIDE = 128
"""Largest template side :func:`match_object` correlates; larger RoIs are matched on shrunken images."""


@dataclass
class Placement:
    """A map ``guide pixel g -> query pixel matrix @ g + offset`` (row, column order).

    Attributes:
        matrix: ``(2, 2)`` linear part.
        offset: ``(2,)`` translation.
        score: how well the two images agree under the map (larger is better; comparable within one method).
    """

    matrix: np.ndarray
    offset: np.ndarray
    score: float = 0.0

    @property
    def scale(self) -> float:
        """Query pixels per guide pixel (square root of the area ratio)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def angle(self) -> float:
        """Rotation of the map in degrees in ``(-180, 180]`` (counter-clockwise as displayed, rows down)."""
        return float(
            np.degrees(np.arctan2(self.matrix[1, 0] - self.matrix[0, 1], self.matrix[0, 0] + self.matrix[1, 1]))
        )


def rotation(angle: float) -> np.ndarray:
    """The ``(2, 2)`` rotation by ``angle`` degrees in (row, column) coordinates, counter-clockwise as displayed."""
    radians = np.radians(angle)
    cos, sin = np.cos(radians), np.sin(radians)
    return np.array([[cos, -sin], [sin, cos]])


def _templates(
    guide: np.ndarray, roi: RoIWindow, side: int, angles: tuple[float, ...]
) -> list[tuple[float, np.ndarray]]:
    """``(angle, (side, side) template)`` per angle: template pixel ``u`` shows guide pixel
    ``centre + step * rotation(angle).T @ (u - (side - 1) / 2)`` (``step = roi.size / side``); angle 0 is the RoI
    crop itself."""
    image = np.asarray(guide, dtype=np.float32)
    step = roi.size / side
    centre = np.array([roi.top, roi.left], dtype=np.float64) + (roi.size - 1) / 2
    smooth = ndimage.gaussian_filter(image, (step - 1) / 2) if step > 1.5 else image
    out = []
    for angle in angles:
        if angle % 360 == 0:
            out.append((angle, crop_resize(torch.from_numpy(image)[None], roi, side)[0].numpy()))
            continue
        matrix = step * rotation(angle).T
        offset = centre - matrix @ np.full(2, (side - 1) / 2)
        out.append(
            (
                angle,
                ndimage.affine_transform(
                    smooth, matrix, offset=offset, output_shape=(side, side), order=1, mode="nearest"
                ),
            )
        )
    return out


def _window_sums(image: np.ndarray, side: int) -> np.ndarray:
    """Sums of ``image`` over every ``side`` x ``side`` window, as scikit-image's ``match_template`` takes them."""
    sums = np.cumsum(image, axis=0)
    sums = sums[side:-1] - sums[: -side - 1]
    sums = np.cumsum(sums, axis=1)
    return sums[:, side:-1] - sums[:, : -side - 1]


def _correlations(image: np.ndarray, templates: list[np.ndarray]) -> list[np.ndarray]:
    """Normalised cross-correlation of ``image`` with each ``(side, side)`` template, centred on the template as
    ``match_template(image, template, pad_input=True, mode="reflect")`` gives it: the image's padding, window sums
    and Fourier transform computed once for all templates."""
    side = templates[0].shape[0]
    padded = np.pad(image.astype(np.float64), side, mode="reflect")
    sums = _window_sums(padded, side)
    spread = np.maximum(_window_sums(padded * padded, side) - sums * sums / side**2, 0.0)
    shape = [fft.next_fast_len(n + side - 1, real=True) for n in padded.shape]
    spectrum = fft.rfft2(padded.astype(np.float32), shape)  # single precision as match_template: half the time
    start = (side - 1) // 2
    rows, cols = slice(start, start + image.shape[0]), slice(start, start + image.shape[1])
    out = []
    for template in templates:
        centred = template - template.mean()
        product = fft.irfft2(spectrum * fft.rfft2(centred[::-1, ::-1].astype(np.float32), shape), shape)
        numerator = product[side : padded.shape[0] - 1, side : padded.shape[1] - 1]
        denominator = np.sqrt(spread * float((centred * centred).sum()))
        response = np.where(denominator > np.finfo(np.float32).eps, numerator / np.maximum(denominator, 1e-300), 0.0)
        out.append(response[rows, cols])
    return out


def match_object(
    guide: np.ndarray,
    mask: np.ndarray,
    query: np.ndarray,
    roi_scale: float = MATCH_ROI_SCALE,
    scales: tuple[float, ...] = MATCH_SCALES,
    angles: tuple[float, ...] = MATCH_ANGLES,
    margin: float = MATCH_TURN_MARGIN,
) -> Placement:
    """Find the guide's RoI (the object and a rim) in the query: shift, scale and rotation of the best normalised
    cross-correlation over ``scales`` (query object size / guide object size) and ``angles``.

    Args:
        guide: ``(h, w)`` guide image; mask: its ``(h, w)`` boolean object mask.
        query: ``(H, W)`` image.
        roi_scale: template side relative to the mask's bounding box.
        scales: relative sizes tried; the query is resized by ``1 / scale`` for each.
        angles: rotations tried (degrees, counter-clockwise as displayed); the template turns by each.
        margin: how much higher a turned match's correlation must be than the best upright one (angle 0) to be
            kept instead (when ``angles`` holds 0).

    Returns:
        the :class:`Placement` (``matrix = scale * rotation(angle)``) with the correlation as its score.

    Raises:
        Propagate2DError: the object is larger than the query at every scale, or no scale or angle is given.
    """
    if not scales or not angles:
        raise Propagate2DError("template matching needs at least one scale and one angle.")
    roi = square_roi(torch.from_numpy(np.asarray(mask)), roi_scale)
    shrink = max(1.0, roi.size / MATCH_SIDE)  # large objects: both images shrunk alike, the template <= MATCH_SIDE
    side = max(1, round(roi.size / shrink))
    templates = _templates(guide, roi, side, tuple(angles))
    guide_centre = np.array([roi.top, roi.left], dtype=np.float64) + (roi.size - 1) / 2
    best: dict[bool, tuple[float, np.ndarray, np.ndarray]] = {}  # upright or turned -> correlation, matrix, centre
    query = np.asarray(query, dtype=np.float32)
    for scale in scales:
        zoom = 1.0 / (scale * shrink)
        shape = [max(1, round(n * zoom)) for n in query.shape]
        if min(shape) < side // 2:  # the object would be larger than the query
            continue
        smooth = ndimage.gaussian_filter(query, (1 / zoom - 1) / 2) if zoom < 1 else query
        resized = ndimage.zoom(smooth, [s / n for s, n in zip(shape, query.shape)], order=1)
        before = [max(0, side - n + 1) // 2 + max(0, side - n + 1) % 2 for n in shape]
        if any(before):  # a query smaller than the template: mirrored out so that it may overhang
            resized = np.pad(resized, [(b, b) for b in before], mode="symmetric")
        # windows of (near) constant intensity (an empty background) divide by ~0: no match there
        local = ndimage.uniform_filter(resized, side, mode="reflect")
        spread = ndimage.uniform_filter(resized * resized, side, mode="reflect") - local * local
        flat = spread < 1e-4 * float(resized.var()) + 1e-12
        for (angle, _), correlation in zip(templates, _correlations(resized, [t for _, t in templates])):
            response = np.nan_to_num(correlation, nan=-1.0)
            response[flat | (response > 1.0 + 1e-6)] = -1.0
            peak = np.unravel_index(int(np.argmax(response)), response.shape)
            value, upright = float(response[peak]), angle % 360 == 0
            if upright not in best or value > best[upright][0]:
                peak_at = np.array(peak, dtype=np.float64) - np.array(before)
                centre = (peak_at + 0.5) * (np.array(query.shape) / np.array(shape)) - 0.5
                best[upright] = (value, scale * rotation(angle), centre)
    if not best:
        raise Propagate2DError(f"a guide's object ({roi.size} px with context) does not fit the {query.shape} query.")
    turned = False in best and (True not in best or best[False][0] > best[True][0] + margin)
    value, matrix, centre = best[not turned]
    return Placement(matrix, centre - matrix @ guide_centre, value)
