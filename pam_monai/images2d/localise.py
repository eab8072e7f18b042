"""Where a guide's object lies in another image, and the crops that show it to PropMask as the 3D propagation does.

PropMask was trained on regions of interest of neighbouring slices: a square of 1.5 x the guiding mask's bounding
box (PAM paper), guide and query cut at the same place and scale and windowed alike. Across images the object sits
elsewhere, at another size and on another intensity scale, so :func:`place` first finds a map ``guide pixel ->
query pixel`` and the query is resampled into the guide's RoI frame (:func:`query_crop`): the pair then looks like
two neighbouring slices. The probability PropMask returns in that frame goes back to the query's own pixels
(:func:`paste_probability`).

Localisers:

* ``"match"`` (default): normalised cross-correlation of the guide's object and a thin rim
  (:data:`MATCH_ROI_SCALE`) over the query at several sizes (:data:`MATCH_SCALES`) and angles
  (:data:`MATCH_ANGLES`; :mod:`pam_monai.images2d.matching`): a shift, a scale and a rotation. Suits objects that
  move about the image.
* ``"register"``: the guide image registered to the query by a 2D affine map maximising their mutual information
  (started from the alignment of the images' intensity moments, refined by Powell's method at 1/4 then 1/2
  resolution). Suits images of the same anatomy or scene layout, also rotated or sheared.
* ``"auto"``: per guide and query, the template match where its correlation reaches :data:`AUTO_THRESHOLD`,
  the registration otherwise (a weak match means the object's look alone does not find it).
* ``"none"``: no localisation (``propagate-2d``'s whole-image path).

Registered masks (:data:`REGISTERED_MASKS`): images of the same anatomy or layout (two brain templates, frames of
one scan plane) align as a whole, and then the guide's mask warped by the affine registration carries the object's
outline, which the look of the crop alone may not. :func:`warped_guide_mask` warps the best-placed guide's mask onto
the query and scores the registration by the correlation of the guide's RoI with the query resampled into it; where
that reaches :data:`REGISTERED_THRESHOLD`, ``propagate-2d`` averages PropMask's probability with the warped mask,
which weighs :data:`REGISTERED_WEIGHT` (``"auto"``, the default).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage, optimize

from pam_monai.errors import Propagate2DError
from pam_monai.images2d.matching import (
    MATCH_ANGLES,
    MATCH_ROI_SCALE,
    MATCH_SCALES,
    MATCH_SIDE,
    MATCH_TURN_MARGIN,
    Placement,
    match_object,
)
from pam_monai.transforms.functional import RoIWindow, crop_resize, guided_window, square_roi

__all__ = [
    "AUTO_THRESHOLD",
    "FUSIONS",
    "LOCALISERS",
    "MATCH_ANGLES",
    "MATCH_ROI_SCALE",
    "MATCH_SCALES",
    "MATCH_SIDE",
    "MATCH_TURN_MARGIN",
    "Placement",
    "QUERY_WINDOWS",
    "REGISTERED_MASKS",
    "REGISTERED_THRESHOLD",
    "REGISTERED_WEIGHT",
    "correlation",
    "guide_crop",
    "match_object",
    "mutual_information",
    "paste_probability",
    "place",
    "query_crop",
    "query_window",
    "register_affine",
    "register_guide",
    "warp_mask",
    "warped_guide_mask",
]

LOCALISERS = ("match", "register", "auto", "none")
"""How ``propagate-2d`` finds a guide's object in a query (``"none"``: whole images, no localisation)."""

AUTO_THRESHOLD = 0.6
"""Correlation of the template match from which ``"auto"`` keeps the match instead of registering (the best of
0.5..0.9 on the validation split of the cross-image benchmark: 0.523 mean DSC, the match alone 0.529)."""

FUSIONS = ("best", "mean")
"""How several guides' probabilities combine: the best-placed guide's alone (its RoI correlates best with the
query resampled into it), or their mean."""

REGISTERED_MASKS = ("auto", "on", "off")
"""Whether PropMask's probability is averaged with the best-placed guide's mask warped by the affine registration:
where that registration's RoI correlation reaches :data:`REGISTERED_THRESHOLD` (``"auto"``), always (``"on"``) or
never (``"off"``)."""

REGISTERED_THRESHOLD = 0.6
"""RoI correlation of the registration from which ``"auto"`` averages in its warped mask. On the validation split
of the cross-image benchmark (102 cases): 0.617 mean DSC at 0.4..0.7, 0.611 at 0.8, 0.607 at 0.9, PropMask with
the match alone 0.568; on every atlas case (two T1 brain templates) the result equals that with the mask always
averaged in, on every generated pair that of the match alone."""

REGISTERED_WEIGHT = 0.6
"""The warped mask's weight in the average with PropMask's probability (thresholded at 0.5): the registered mask
stays foreground, and PropMask adds the pixels beyond it where its probability exceeds 5/6 and decides along its
blurred edge. At 0.5 a registered mask that lies outside PropMask's crop vanishes (probability 0 there). On the
validation split of the cross-image benchmark: 0.615 / 0.617 / 0.616 mean DSC at 0.5 / 0.6 / 0.7."""

QUERY_WINDOWS = ("mask", "quantile")
"""How a query crop gets its own intensity window: the 0.5 / 99.5 percentiles of its pixels under the guide's mask
(both in the guide's RoI frame), or the query crop's percentiles at the ranks the guide's window takes in the guide
crop."""

# -------------------------------------------------------------------------------------------------------------
# registration (mutual information)
# -------------------------------------------------------------------------------------------------------------


def _quantise(image: np.ndarray, bins: int) -> np.ndarray:
    low, high = np.percentile(image, (1, 99))
    return np.clip(((image - low) / max(high - low, 1e-6) * bins).astype(int), 0, bins - 1)


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Mutual information of two integer images with values in ``[0, bins)``."""
    joint = np.bincount((a * bins + b).ravel(), minlength=bins * bins).reshape(bins, bins).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / (pa @ pb)[nonzero])).sum())


def _moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and covariance of the image's bright half (intensity above its median)."""
    weight = np.where(image > np.median(image), image - np.median(image), 0.0)
    if weight.sum() <= 0:
        weight = np.ones_like(image)
    grid = np.indices(image.shape).reshape(2, -1).astype(np.float64)
    w = weight.ravel() / weight.sum()
    centre = grid @ w
    spread = (grid - centre[:, None]) * np.sqrt(w)
    return centre, spread @ spread.T


def _matrix(params: np.ndarray) -> np.ndarray:
    return np.array([[1 + params[0], params[1]], [params[2], 1 + params[3]]])


def _offset(params: np.ndarray, centre_fixed: np.ndarray, centre_moving: np.ndarray) -> np.ndarray:
    """The map's offset: ``params[4:]`` is the shift of the fixed image's centre from the moving one's."""
    return centre_moving + params[4:] - _matrix(params) @ centre_fixed


def _cost(
    params: np.ndarray,
    fixed: np.ndarray,
    moving: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    window: tuple[float, float],
) -> float:
    """Minus the mutual information of ``fixed`` (quantised) and ``moving`` warped by ``params``."""
    low, high = window
    warped = ndimage.affine_transform(
        moving, _matrix(params), offset=_offset(params, *centres), output_shape=fixed.shape, order=1, cval=low
    )
    return -mutual_information(fixed, np.clip(((warped - low) / max(high - low, 1e-6) * 32).astype(int), 0, 31))


def register_affine(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A 2D affine map ``fixed pixel -> moving pixel`` (``matrix @ p + offset``) maximising mutual information.

    Started from the alignment of the two images' intensity moments (centres, and scales from the covariances),
    then refined by Powell's method at 1/4 and 1/2 resolution.

    Args:
        moving: ``(h, w)`` image mapped onto ``fixed``.
        fixed: ``(H, W)`` image.

    Returns:
        ``(matrix (2, 2), offset (2,), mutual information at 1/2 resolution)``.
    """
    moving, fixed = np.asarray(moving, dtype=np.float32), np.asarray(fixed, dtype=np.float32)
    (cm, sm), (cf, sf) = _moments(moving), _moments(fixed)
    scale = np.clip(np.sqrt(np.diag(sm) / np.maximum(np.diag(sf), 1e-6)), 0.5, 2.0)
    params = np.array([scale[0] - 1, 0.0, 0.0, scale[1] - 1, 0.0, 0.0])
    information = 0.0
    for factor in (4, 2):
        small_fixed = _quantise(ndimage.zoom(fixed, 1 / factor, order=1), 32)
        small_moving = ndimage.zoom(moving, 1 / factor, order=1)
        window = tuple(float(v) for v in np.percentile(small_moving, (1, 99)))
        scaled = params.copy()
        scaled[4:] /= factor
        result = optimize.minimize(
            _cost,
            scaled,
            args=(small_fixed, small_moving, (cf / factor, cm / factor), window),
            method="Powell",
            options={"xtol": 1e-3, "ftol": 1e-4, "maxiter": 20},
        )
        params, information = result.x.copy(), -float(result.fun)
        params[4:] *= factor
    return _matrix(params), _offset(params, cf, cm), information


def register_guide(guide: np.ndarray, query: np.ndarray) -> Placement:
    """:func:`register_affine` of the guide image onto the query, as a ``guide -> query`` :class:`Placement`."""
    matrix, offset, information = register_affine(guide, query)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise Propagate2DError("registering a guide to a query gave a degenerate map (no usable alignment).")
    inverse = np.linalg.inv(matrix)
    return Placement(inverse, -inverse @ offset, information)


def warped_guide_mask(
    guide: np.ndarray,
    mask: np.ndarray,
    crop: np.ndarray,
    roi: RoIWindow,
    query: np.ndarray,
    placement: Placement | None = None,
) -> tuple[np.ndarray, float]:
    """The guide's mask warped onto the query by the affine registration, and how well that registration aligns.

    The guide image is registered to the query (:func:`register_guide`, unless ``placement`` is that registration
    already); the query resampled into the guide's RoI frame through it (:func:`query_crop`) is correlated with
    the guide's crop.

    Args:
        guide: ``(h, w)`` image; mask: its ``(h, w)`` mask.
        crop: the guide's ``(2, S, S)`` image and mask crops (:func:`guide_crop`); roi: their RoI.
        query: ``(H, W)`` image.
        placement: the registration ``guide -> query``, when already computed.

    Returns:
        ``(warped mask float32 (H, W) in [0, 1] (bilinear), correlation in the guide's RoI)``.
    """
    placement = register_guide(guide, query) if placement is None else placement
    score = correlation(query_crop(query, placement, roi, crop.shape[-1]), crop[0])
    return warp_mask(mask, placement, query.shape), score


def warp_mask(mask: np.ndarray, placement: Placement, shape: tuple[int, ...]) -> np.ndarray:
    """A guide's ``(h, w)`` mask moved onto a query of ``shape`` through ``placement`` (``guide -> query``):
    float32 in [0, 1], bilinear, 0 outside the guide."""
    inverse = np.linalg.inv(placement.matrix)  # query pixel -> guide pixel
    warped = ndimage.affine_transform(
        np.asarray(mask, dtype=np.float32), inverse, offset=-inverse @ placement.offset, output_shape=shape, order=1
    )
    return np.clip(warped, 0.0, 1.0).astype(np.float32)


# -------------------------------------------------------------------------------------------------------------
# crops in the guide's RoI frame
# -------------------------------------------------------------------------------------------------------------


def place(
    guide: np.ndarray,
    mask: np.ndarray,
    query: np.ndarray,
    method: str,
    roi_scale: float = 1.5,
    threshold: float | None = None,
) -> Placement:
    """The ``guide -> query`` map by ``method`` (``"register"``, ``"match"`` or ``"auto"``, see :data:`LOCALISERS`).

    ``roi_scale``: the crops' RoI (not used here: the template is :data:`MATCH_ROI_SCALE` x the mask's box);
    ``threshold``: the match correlation from which ``"auto"`` keeps the match (default :data:`AUTO_THRESHOLD`).
    """
    if method == "register":
        return register_guide(guide, query)
    if method == "match":
        return match_object(guide, mask, query)
    if method == "auto":
        matched = match_object(guide, mask, query)
        limit = AUTO_THRESHOLD if threshold is None else threshold
        return matched if matched.score >= limit else register_guide(guide, query)
    raise Propagate2DError(f"unknown localiser {method!r}: expected one of {', '.join(LOCALISERS[:-1])}.")


def _frame(roi: RoIWindow, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``crop pixel u -> guide pixel`` of a ``size``-pixel crop of ``roi``: ``step * u + start`` (pixel centres)."""
    step = roi.size / size
    return np.eye(2) * step, np.array([roi.top, roi.left], dtype=np.float64) + 0.5 * step - 0.5


def guide_crop(guide: np.ndarray, mask: np.ndarray, roi_scale: float, size: int) -> tuple[RoIWindow, np.ndarray]:
    """The guide's RoI (``roi_scale`` x its mask's box, square) and the ``(2, size, size)`` image and mask crops."""
    roi = square_roi(torch.from_numpy(np.asarray(mask)), roi_scale)
    stack = torch.from_numpy(np.stack([np.asarray(guide, dtype=np.float32), np.asarray(mask, dtype=np.float32)]))
    image = crop_resize(stack[:1], roi, size, pad_value=float(np.min(guide)))[0]
    crop_mask = crop_resize(stack[1:], roi, size, mode="nearest-exact")[0]
    return roi, torch.stack([image, crop_mask]).numpy()


def query_crop(query: np.ndarray, placement: Placement, roi: RoIWindow, size: int) -> np.ndarray:
    """The query resampled onto the guide RoI's ``(size, size)`` grid through ``placement`` (bilinear; smoothed
    first when shrinking; outside the query: its minimum)."""
    step, start = _frame(roi, size)
    matrix = placement.matrix @ step
    offset = placement.matrix @ start + placement.offset
    shrink = float(np.sqrt(abs(np.linalg.det(matrix))))
    source = np.asarray(query, dtype=np.float32)
    if shrink > 1.5:
        source = ndimage.gaussian_filter(source, (shrink - 1) / 2)
    return ndimage.affine_transform(
        source, matrix, offset=offset, output_shape=(size, size), order=1, cval=float(np.min(query))
    )


def paste_probability(
    probability: np.ndarray, placement: Placement, roi: RoIWindow, shape: tuple[int, int]
) -> np.ndarray:
    """A ``(size, size)`` probability in the guide RoI's frame, back on the query's ``shape`` pixels (0 outside)."""
    size = probability.shape[-1]
    step, start = _frame(roi, size)
    # query pixel q -> crop pixel: step^-1 (matrix^-1 (q - offset) - start)
    to_guide = np.linalg.inv(placement.matrix)
    matrix = np.linalg.inv(step) @ to_guide
    offset = np.linalg.inv(step) @ (-to_guide @ placement.offset - start)
    out = ndimage.affine_transform(
        np.asarray(probability, dtype=np.float32), matrix, offset=offset, output_shape=shape, order=1, cval=0.0
    )
    return np.clip(out, 0.0, 1.0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped images (0 when either is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def query_window(
    crop: np.ndarray, guide: np.ndarray, mask: np.ndarray, window: tuple[float, float], kind: str = "mask"
) -> tuple[float, float]:
    """The intensity window ``(lo, hi)`` of a query crop in the guide's RoI frame (see :data:`QUERY_WINDOWS`).

    Args:
        crop: ``(S, S)`` query crop (:func:`query_crop`).
        guide: ``(S, S)`` guide crop; mask: its ``(S, S)`` mask crop (:func:`guide_crop`).
        window: the guide's own window.
        kind: ``"mask"`` or ``"quantile"``.
    """
    inside = torch.from_numpy(np.asarray(mask) > 0.5)
    if kind == "mask":
        return guided_window(torch.from_numpy(crop), inside)
    if kind != "quantile":
        raise Propagate2DError(f"unknown query window {kind!r}: expected one of {', '.join(QUERY_WINDOWS)}.")
    ranks = [100.0 * float(np.mean(guide <= bound)) for bound in window]
    lo, hi = (float(v) for v in np.percentile(crop, ranks))
    return (lo, hi) if hi > lo else guided_window(torch.from_numpy(crop), inside)
