"""Sliding windows over one large 2D image through MONAI's PatchInferer: the same weighted probability as
window-by-window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pam_monai.images2d.io import ArrayRegionReader
from pam_monai.images2d.set2d import GuideBatch, encode_guides, guided_probability, resize
from pam_monai.images2d.sliding2d import InstanceGuides, border_profile, stitch_probability, window_starts
from pam_monai.networks import build_propmask
from pam_monai.transforms.intensity import apply_window


class PositionSensitivePropMask(nn.Module):
    """Logits from a fixed random convolution of the query plus a ramp across the window: every window position
    and every overlap count changes the averaged probability, so any misplaced or double-counted window shows."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.kernel = nn.Parameter(torch.randn((2, 1, 5, 5), generator=generator) * 0.5, requires_grad=False)
        ramp = torch.linspace(-1.0, 1.0, self.input_size)
        self.register_buffer("ramp", ramp[None, :] * ramp[:, None])

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        logits = nn.functional.conv2d(queries, self.kernel, padding=2)
        logits = logits + torch.stack((-self.ramp, self.ramp))[None] + masks.mean() * index[:, None, None, None]
        return [logits, logits[..., ::2, ::2]]


def reference_probability(image: np.ndarray, network: nn.Module, guides: InstanceGuides, fusion: str) -> np.ndarray:
    """Window by window over the mirrored image: weighted sum over windows divided by the summed weights."""
    side, stride, border, batch = guides.window, guides.stride, guides.border, guides.batch
    height, width = image.shape
    tops = window_starts(height, side, stride, border)
    lefts = window_starts(width, side, stride, border)
    pad = ((border, tops[-1] + side - height), (border, lefts[-1] + side - width))
    padded = np.pad(image, pad, mode="symmetric")
    profile = border_profile(side, border)
    weight = profile[:, None] * profile[None, :]
    total, count = np.zeros_like(padded), np.zeros_like(padded)
    features = encode_guides(network, batch)
    if features is not None and fusion == "joint":
        features = features.joined()
    size = guides.query_size if features is not None else batch.size
    for top in tops:
        for left in lefts:
            r, c = top + border, left + border
            crop = torch.from_numpy(padded[r : r + side, c : c + side].copy())[None, None]
            query = apply_window(resize(crop, size), *batch.window)
            probability = guided_probability(network, batch, query, features)
            probability = resize(probability[:, None].float(), side)[0, 0].clamp(0, 1).numpy()
            total[r : r + side, c : c + side] += probability * weight
            count[r : r + side, c : c + side] += weight
    return (total / count)[border : border + height, border : border + width]


def _random_guides(size: int, count: int = 2) -> GuideBatch:
    generator = torch.Generator().manual_seed(2)
    return GuideBatch(
        images=torch.randn((count, 1, size, size), generator=generator),
        masks=(torch.rand((count, 1, size, size), generator=generator) > 0.5).float(),
        window=(10.0, 90.0),
    )


def _stitch(image: np.ndarray, network: nn.Module, guides: InstanceGuides, batch_size: int, fusion: str) -> np.ndarray:
    bands: list[tuple[int, np.ndarray]] = []
    emit = lambda top, rows: bands.append((top, rows.copy()))  # noqa: E731
    stitch_probability(ArrayRegionReader(image), network, guides, emit, batch_size, fusion=fusion)
    assert bands[0][0] == 0
    for (top, rows), (following, _) in zip(bands, bands[1:]):
        assert top + len(rows) == following  # consecutive, complete bands
    stitched = np.concatenate([rows for _, rows in bands])
    assert stitched.shape == image.shape and stitched.dtype == np.float32
    return stitched


@pytest.mark.parametrize(
    ("shape", "side", "border", "batch_size"),
    [((150, 211), 64, 0, 3), ((64, 64), 64, 0, 8), ((97, 40), 32, 0, 1), ((150, 211), 64, 12, 3), ((30, 90), 48, 8, 2)],
)
def test_stitched_probability_matches_window_by_window(
    shape: tuple[int, int], side: int, border: int, batch_size: int
) -> None:
    image = np.random.default_rng(1).normal(50.0, 20.0, shape).astype(np.float32)
    network = PositionSensitivePropMask().eval()
    guides = InstanceGuides(_random_guides(32), side, side / 2, side**2 / 4, 2, border=border)
    stitched = _stitch(image, network, guides, 8, "mean")
    expected = reference_probability(image, network, guides, "mean")
    np.testing.assert_allclose(stitched, expected, atol=2e-6, rtol=0)
    assert stitched.std() > 0.01  # the windows really differ
    np.testing.assert_allclose(_stitch(image, network, guides, batch_size, "mean"), stitched, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fusion", ["joint", "mean"])
def test_larger_query_windows_with_propmask(fusion: str) -> None:
    """Query windows twice the guide crops (the network sees 128 px queries and 64 px guides), border-weighted."""
    torch.manual_seed(0)
    network = build_propmask("light", input_size=64).eval()
    image = np.random.default_rng(3).normal(50.0, 20.0, (150, 200)).astype(np.float32)
    guides = InstanceGuides(_random_guides(64, 3), 128, 32.0, 800.0, 3, guide_side=64, border=16)
    assert guides.query_size == 128 and guides.stride == 96
    stitched = _stitch(image, network, guides, 4, fusion)
    np.testing.assert_allclose(stitched, reference_probability(image, network, guides, fusion), atol=1e-5, rtol=0)
    assert stitched.std() > 1e-3


def test_border_profile_and_window_starts() -> None:
    profile = border_profile(64, 16)
    assert profile[16:48].min() == 1.0 and profile[:8].max() == pytest.approx(1e-3) and profile[0] > 0
    np.testing.assert_array_equal(profile, profile[::-1])
    assert window_starts(100, 64, 32) == [0, 32, 64]
    starts = window_starts(1000, 256, 192, 32)
    assert starts[0] == -32 and starts[-1] + 256 - 32 >= 1000 > starts[-2] + 256 - 32
    inner = np.zeros(1000, dtype=bool)
    for start in starts:  # every pixel in the full-weight part of some window
        inner[max(start + 32, 0) : start + 256 - 32] = True
    assert inner.all()
