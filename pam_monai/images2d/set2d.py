"""Propagation across a set of 2D images: a few annotated examples guide the segmentation of many others.

By default (:func:`localised_targets`) each guide's object is first found in every target
(:mod:`pam_monai.images2d.localise`), guide and target are cut around it as the 3D propagation's regions of
interest are (1.5 x the guide mask's box, the target resampled into the guide's frame), each is windowed on its
own, and the probability is pasted back. The whole-image path (``localise="none"``) shows PropMask whole images:
every target image is a query slice and every annotated example a guiding slice of PropMask; a target's
foreground probability is the average over all guides and all deep-supervision heads. PropMask's image encoder
does not depend on the guide, so each query is encoded once and the guides (encoded once, :func:`encode_guides`)
are paired with its features only in the cross-attention and the decoder. The intensity window
comes from the pooled foreground pixels of all guides (0.5 / 99.5 percentiles, as the PAM paper does for one
guide), so every target is normalised the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pam_monai.errors import Propagate2DError
from pam_monai.images2d.io import binary_mask2d, to_grey
from pam_monai.images2d.localise import (
    FUSIONS,
    LOCALISERS,
    QUERY_WINDOWS,
    REGISTERED_MASKS,
    REGISTERED_THRESHOLD,
    REGISTERED_WEIGHT,
    correlation,
    guide_crop,
    paste_probability,
    place,
    query_crop,
    query_window,
    warped_guide_mask,
)
from pam_monai.inferers.box2mask import foreground_probability
from pam_monai.inferers.propagation_parts import network_device, network_input_size
from pam_monai.transforms.intensity import apply_window, guided_window

__all__ = [
    "GuideBatch",
    "GuideFeatures",
    "Propagate2DError",
    "check_guides",
    "check_registered_mask",
    "encode_guides",
    "guided_probability",
    "localised_targets",
    "network_input_size",
    "pad_square",
    "pooled_guide_window",
    "predict_targets",
    "prepare_guides",
    "propagate_to_images",
    "resize",
    "resize_mask",
    "splits_encoding",
    "to_grey",
]

_MAX_QUANTILE_VALUES = 8_000_000  # torch.quantile refuses inputs above 16M elements


@dataclass
class GuideBatch:
    """Guides ready for the network.

    Attributes:
        images: ``(G, 1, S, S)`` normalised guiding images.
        masks: ``(G, 1, S, S)`` float 0/1 guiding masks.
        window: the intensity window ``(lo, hi)`` shared by guides and queries.
    """

    images: torch.Tensor
    masks: torch.Tensor
    window: tuple[float, float]

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


def check_guides(
    guides: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
    names: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grey images and boolean masks of the guides; sizes must match and masks must not be empty."""
    if len(guides) == 0:
        raise Propagate2DError("no guides given: at least one annotated image (image + mask) is needed.")
    checked = []
    for i, (image, mask) in enumerate(guides):
        name = names[i] if names is not None else f"guide {i}"
        grey, binary = to_grey(image, name), binary_mask2d(mask, name)
        if grey.shape != binary.shape:
            raise Propagate2DError(
                f"{name}: the image ({grey.shape[0]}x{grey.shape[1]}) and its mask "
                f"({binary.shape[0]}x{binary.shape[1]}) differ in size."
            )
        if not binary.any():
            raise Propagate2DError(f"{name}: the guide mask is empty (no nonzero pixel marks the object).")
        checked.append((grey, binary))
    return checked


def pooled_guide_window(guides: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """0.5 / 99.5 percentiles of the pixels under all guide masks together.

    All guide pixels go in (masked), so a constant foreground is widened relative to the guides' full range,
    as :func:`guided_window` does for one guiding slice.
    """
    values = np.concatenate([image.ravel() for image, _ in guides]).astype(np.float32)
    inside = np.concatenate([mask.ravel() for _, mask in guides])
    step = int(inside.sum()) // _MAX_QUANTILE_VALUES + 1
    return guided_window(torch.from_numpy(values[::step]), torch.from_numpy(inside[::step]))


def pad_square(image: torch.Tensor, value: float) -> tuple[torch.Tensor, int, int]:
    """Pad ``(h, w)`` to ``(side, side)`` with ``value``, content centred; returns the image, top and left."""
    h, w = image.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    if side == h == w:
        return image, 0, 0
    out = torch.full((*image.shape[:-2], side, side), value, dtype=image.dtype, device=image.device)
    out[..., top : top + h, left : left + w] = image
    return out, top, left


def resize(batch: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, h, w)``; antialiased when shrinking."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(batch.shape[-2:]) == size:
        return batch.float()
    shrink = batch.shape[-2] > size[0] or batch.shape[-1] > size[1]
    return F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 1, h, w)`` 0/1 masks to ``size``: area fraction > 0.5, keeping at least the pixels > 0 if all vanish."""
    soft = resize(mask.float(), size)
    hard = (soft > 0.5).float()
    for i in range(hard.shape[0]):
        if not bool(hard[i].any()):
            hard[i] = (soft[i] > 0).float()
    return hard


def prepare_guides(
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    size: int,
    window: tuple[float, float] | None = None,
    device: torch.device | str = "cpu",
) -> GuideBatch:
    """Pad every (checked) guide to a square with the window's low value, resize to ``size`` and normalise."""
    window = window or pooled_guide_window(guides)
    images, masks = [], []
    for image, mask in guides:
        padded, _, _ = pad_square(torch.from_numpy(image), window[0])
        padded_mask, _, _ = pad_square(torch.from_numpy(mask.astype(np.float32)), 0.0)
        images.append(apply_window(resize(padded[None, None], size), *window)[0])
        masks.append(resize_mask(padded_mask[None, None], size)[0])
    return GuideBatch(torch.stack(images).to(device), torch.stack(masks).to(device), window)


@dataclass
class GuideFeatures:
    """Guides encoded once for every query: PropMask's image and mask features at its cross-attention stages.

    Attributes:
        images: per attention stage ``s``, ``(G, C_s, h_s, w_s)`` guide image features.
        masks: per attention stage ``s``, ``(G, C_s, h_s, w_s)`` guide mask features.
    """

    images: dict[int, torch.Tensor]
    masks: dict[int, torch.Tensor]

    @property
    def count(self) -> int:
        return int(next(iter(self.images.values())).shape[0])

    def joined(self) -> GuideFeatures:
        """All guides as one guide: their feature maps stacked along the rows, ``(1, C_s, G * h_s, w_s)``.

        The cross-attention has no positional encoding, so a query paired with the joined guide attends to the
        tokens of every guide in one softmax: one decoder pass per query whatever the number of guides.
        """

        def join(features: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
            return {s: torch.cat(tuple(f), dim=1)[None] for s, f in features.items()}

        return GuideFeatures(join(self.images), join(self.masks))


_SPLIT_PARTS = ("image_encoder", "mask_encoder", "cross_attentions", "attention_stages", "decoder")


def splits_encoding(network: torch.nn.Module) -> bool:
    """Whether the network shows PropMask's parts, so queries can be encoded apart from the guides."""
    return all(hasattr(network, part) for part in _SPLIT_PARTS)


@torch.inference_mode()
def encode_guides(network: torch.nn.Module, guides: GuideBatch) -> GuideFeatures | None:
    """The guides' features, or ``None`` for a network without PropMask's parts (it is then run whole)."""
    if not splits_encoding(network):
        return None
    images, masks = network.image_encoder(guides.images), network.mask_encoder(guides.masks)
    stages = network.attention_stages
    return GuideFeatures({s: images[s] for s in stages}, {s: masks[s] for s in stages})


def _paired_logits(
    network: torch.nn.Module, features: GuideFeatures, skips: list[torch.Tensor], first: int, last: int
) -> list[torch.Tensor]:
    """Decoder logits of queries ``first..last-1`` (their encoder ``skips``) each paired with every guide."""
    g = features.count
    index = torch.arange(g, device=skips[0].device).repeat(last - first)
    fused = [skip[first:last].repeat_interleave(g, dim=0) for skip in skips]
    for attention, s in zip(network.cross_attentions, network.attention_stages):
        fused[s] = fused[s] + attention(fused[s], features.images[s], features.masks[s], index)
    return network.decoder(fused)


_PAIRED_PIXELS = 64 * 128 * 128  # query-guide pairs decoded together: bounds the decoder's memory


@torch.inference_mode()
def guided_probability(
    network: torch.nn.Module,
    guides: GuideBatch,
    queries: torch.Tensor,
    features: GuideFeatures | None = None,
) -> torch.Tensor:
    """Foreground probability of ``(n, 1, S, S)`` normalised queries, averaged over every guide and head.

    With PropMask's parts (``image_encoder``, ``mask_encoder``, ``cross_attentions``, ``decoder``), each query is
    encoded once and its features are paired with every guide's (``features``, from :func:`encode_guides` when not
    given) in the cross-attention and the decoder; the result equals pairing every query with every guide in
    ``forward_indexed``, which is what other networks get. Queries may then be larger than the guides (any
    multiple of the network's downsampling factor): the network is convolutional and its attention positionless.
    With ``features.joined()`` each query is decoded once, attending to all guides together.

    Returns:
        ``(n, S, S)`` probabilities.
    """
    n, g, size = queries.shape[0], guides.images.shape[0], guides.size
    queries = queries.to(guides.images.device)
    features = features or encode_guides(network, guides)
    if features is None:
        paired = queries.repeat_interleave(g, dim=0)
        index = torch.arange(g, device=paired.device).repeat(n)
        probability = foreground_probability(network.forward_indexed(guides.images, guides.masks, paired, index), size)
        return probability.reshape(n, g, size, size).mean(dim=1)
    side, g = int(queries.shape[-1]), features.count
    skips = network.image_encoder(queries)
    step = max(1, _PAIRED_PIXELS // (g * side * side))
    parts = []
    for first in range(0, n, step):
        last = min(first + step, n)
        probability = foreground_probability(_paired_logits(network, features, skips, first, last), side)
        parts.append(probability.reshape(last - first, g, side, side).mean(dim=1))
    return torch.cat(parts)


def _query(image: np.ndarray, guides: GuideBatch) -> tuple[torch.Tensor, int, int]:
    padded, top, left = pad_square(torch.from_numpy(image), guides.window[0])
    return apply_window(resize(padded[None, None], guides.size), *guides.window)[0], top, left


def predict_targets(
    network: torch.nn.Module, guides: GuideBatch, targets: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One forward for a batch of grey targets; probabilities resized back to each target's own size."""
    if len(targets) == 0:
        return []
    prepared = [_query(image, guides) for image in targets]
    probability = guided_probability(network, guides, torch.stack([q for q, _, _ in prepared])).float().cpu()
    results = []
    for (_, top, left), image, prob in zip(prepared, targets, probability):
        h, w = image.shape
        full = resize(prob[None, None], max(h, w))[0, 0, top : top + h, left : left + w].clamp(0, 1).numpy()
        results.append((full, full > 0.5))
    return results


@torch.inference_mode()
def localised_targets(
    network: torch.nn.Module,
    guides: Sequence[tuple[np.ndarray, np.ndarray]],
    targets: Sequence[np.ndarray],
    localise: str = "match",
    fusion: str = "best",
    roi_scale: float = 1.5,
    window_kind: str = "mask",
    registered_mask: str = "auto",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each guide's object found in every grey target, PropMask run on RoI crops, probabilities pasted back.

    Per guide: its RoI (``roi_scale`` x the mask's bounding box, square) at the network's input size, windowed
    with the 0.5 / 99.5 percentiles of its own foreground (PAM paper). Per target and guide: the map
    ``guide -> target`` (:func:`pam_monai.images2d.localise.place`), the target resampled onto the guide's RoI
    grid through it and windowed on its own (``window_kind``, :data:`QUERY_WINDOWS`); the pairs go through
    PropMask in one forward and each probability is mapped back to the target's pixels. Where the images align as a
    whole, the probability is then averaged with the best-placed guide's mask warped onto the target by the affine
    registration (``registered_mask``; :func:`pam_monai.images2d.localise.warped_guide_mask`).

    Args:
        network: a PropMask network (``forward_indexed``, ``input_size``), in eval mode.
        guides: checked ``(image, mask)`` pairs (:func:`check_guides`).
        targets: grey 2D images of any sizes.
        localise: ``"match"``, ``"register"`` or ``"auto"`` (the match where it correlates well enough, else the
            registration; :data:`pam_monai.images2d.localise.LOCALISERS`).
        fusion: the ``"best"`` guide's probability (its RoI correlates best with the target resampled into it;
            only that pair is run), or the ``"mean"`` of all guides'.
        roi_scale: RoI side relative to the guide mask's bounding box (the 3D propagation's default 1.5).
        window_kind: the target crop's window, :data:`QUERY_WINDOWS`.
        registered_mask: whether the best-placed guide's mask warped by the affine registration is averaged in:
            ``"auto"`` (where that registration's RoI correlation reaches
            :data:`~pam_monai.images2d.localise.REGISTERED_THRESHOLD`), ``"on"`` or ``"off"``
            (:data:`~pam_monai.images2d.localise.REGISTERED_MASKS`).

    Returns:
        per target ``(probability float32 (H, W), mask bool (H, W))``.
    """
    if localise not in LOCALISERS[:-1]:
        raise Propagate2DError(f"unknown localiser {localise!r}: expected one of {', '.join(LOCALISERS[:-1])}.")
    if fusion not in FUSIONS:
        raise Propagate2DError(f"unknown fusion {fusion!r}: expected one of {', '.join(FUSIONS)}.")
    if window_kind not in QUERY_WINDOWS:
        raise Propagate2DError(f"unknown query window {window_kind!r}: expected one of {', '.join(QUERY_WINDOWS)}.")
    check_registered_mask(registered_mask, localise)
    if roi_scale < 1.0:
        raise Propagate2DError(f"the RoI must hold the guide's object: roi_scale >= 1, got {roi_scale}.")
    size, device = network_input_size(network), network_device(network)
    rois, crops = zip(*(guide_crop(image, mask, roi_scale, size) for image, mask in guides))
    windows = [guided_window(torch.from_numpy(image), torch.from_numpy(mask)) for image, mask in guides]
    guide_images = torch.stack([apply_window(torch.from_numpy(c[0]), *w) for c, w in zip(crops, windows)])
    guide_images = guide_images[:, None].to(device)
    guide_masks = torch.from_numpy(np.stack([c[1] for c in crops]))[:, None].float().to(device)
    results = []
    for target in targets:
        placements = [place(image, mask, target, localise, roi_scale) for image, mask in guides]
        raw = [query_crop(target, p, roi, size) for p, roi in zip(placements, rois)]
        best = int(np.argmax([correlation(q, c[0]) for q, c in zip(raw, crops)]))  # the best-placed guide
        chosen = [best] if fusion == "best" else list(range(len(guides)))
        queries = torch.stack(
            [
                apply_window(torch.from_numpy(raw[k]), *query_window(raw[k], *crops[k], windows[k], window_kind))
                for k in chosen
            ]  # fmt: skip
        )
        index = torch.tensor(chosen, device=device)
        probability = foreground_probability(
            network.forward_indexed(guide_images, guide_masks, queries[:, None].to(device), index), size
        )
        pasted = [
            paste_probability(p, placements[k], rois[k], target.shape)
            for p, k in zip(probability.float().cpu().numpy(), chosen)
        ]
        full = np.mean(pasted, axis=0).astype(np.float32)
        if registered_mask != "off":
            registration = placements[best] if localise == "register" else None
            try:
                warped, score = warped_guide_mask(*guides[best], crops[best], rois[best], target, registration)
            except Propagate2DError:  # a degenerate registration: the images do not align
                if registered_mask == "on":
                    raise
                score = -1.0
            if registered_mask == "on" or score >= REGISTERED_THRESHOLD:
                full = ((1 - REGISTERED_WEIGHT) * full + REGISTERED_WEIGHT * warped).astype(np.float32)
        results.append((full, full > 0.5))
    return results


def check_registered_mask(registered_mask: str, localise: str) -> None:
    """Raise :class:`Propagate2DError` for an unknown ``registered_mask`` rule, or ``"on"`` without localisation."""
    if registered_mask not in REGISTERED_MASKS:
        raise Propagate2DError(
            f"unknown registered-mask rule {registered_mask!r}: expected one of {', '.join(REGISTERED_MASKS)}."
        )
    if registered_mask == "on" and localise == "none":
        raise Propagate2DError("a registered mask is averaged in on the localised path only, not with localise 'none'.")


def propagate_to_images(
    guides: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
    targets: Sequence[np.ndarray | torch.Tensor],
    network: torch.nn.Module,
    batch_size: int = 16,
    localise: str = "match",
    fusion: str = "best",
    registered_mask: str = "auto",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segment every target image with every annotated guide as PropMask's guiding slice.

    Args:
        guides: ``(image, mask)`` pairs; images 2D or channel-last RGB(A) (converted to luminance), masks 2D,
            nonzero marking the object.
        targets: 2D (or RGB) images of any sizes.
        network: a PropMask network (anything with ``forward_indexed`` and ``input_size``), in eval mode.
        batch_size: targets per forward pass on the whole-image path (each forward runs ``batch_size x
            len(guides)`` queries); the localised path runs one forward per target.
        localise: ``"register"`` / ``"match"``: find each guide's object in every target and run on RoI crops
            (:func:`localised_targets`); ``"none"``: whole images at the network's input size, every target in
            the guides' pooled intensity window.
        fusion: how the localised path combines several guides (``"mean"`` or ``"best"``); the whole-image path
            always averages.
        registered_mask: on the localised path, whether the best-placed guide's registered mask is averaged in
            (``"auto"``: where the registration aligns the images well; ``"on"``; ``"off"``; see
            :func:`localised_targets`).

    Returns:
        per target ``(probability, mask)``: float32 foreground probability and boolean mask (``> 0.5``), both of
        the target's original size.

    Raises:
        Propagate2DError: no guides, a guide whose mask is empty or differs in size from its image, a target that
            is not a 2D image, an unknown localiser, fusion or registered-mask rule.
    """
    if batch_size < 1:
        raise Propagate2DError(f"batch_size must be at least 1, got {batch_size}.")
    if localise not in LOCALISERS:
        raise Propagate2DError(f"unknown localiser {localise!r}: expected one of {', '.join(LOCALISERS)}.")
    check_registered_mask(registered_mask, localise)
    checked = check_guides(guides)
    grey = [to_grey(t, f"target {i}") for i, t in enumerate(targets)]
    if localise != "none":
        return localised_targets(network, checked, grey, localise, fusion, registered_mask=registered_mask)
    batch = prepare_guides(checked, network_input_size(network), device=network_device(network))
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(grey), batch_size):
        results.extend(predict_targets(network, batch, grey[start : start + batch_size]))
    return results
