"""Sliding windows over one large 2D image through MONAI's PatchInferer: the same probability as window-by-window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pam_monai.images2d.io import ArrayRegionReader
from pam_monai.images2d.set2d import GuideBatch, guided_probability, resize
from pam_monai.images2d.sliding2d import InstanceGuides, stitch_probability, window_starts
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


def reference_probability(image: np.ndarray, network: nn.Module, guides: InstanceGuides) -> np.ndarray:
    """Window by window over the whole image, summed and divided by the window count of every pixel."""
    side, batch = guides.window, guides.batch
    stride = max(1, side // 2)
    height, width = image.shape
    tops, lefts = window_starts(height, side, stride), window_starts(width, side, stride)
    padded = np.full((tops[-1] + side, lefts[-1] + side), batch.window[0], dtype=np.float32)
    padded[:height, :width] = image
    total, count = np.zeros_like(padded), np.zeros_like(padded)
    for top in tops:
        for left in lefts:
            crop = torch.from_numpy(padded[top : top + side, left : left + side].copy())[None, None]
            query = apply_window(resize(crop, batch.size), *batch.window)
            probability = resize(guided_probability(network, batch, query)[:, None].float(), side)[0, 0]
            total[top : top + side, left : left + side] += probability.clamp(0, 1).numpy()
            count[top : top + side, left : left + side] += 1
    return (total / count)[:height, :width]


@pytest.mark.parametrize(("shape", "side", "batch_size"), [((150, 211), 64, 3), ((64, 64), 64, 8), ((97, 40), 32, 1)])
def test_stitched_probability_matches_window_by_window(shape: tuple[int, int], side: int, batch_size: int) -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(50.0, 20.0, shape).astype(np.float32)
    network = PositionSensitivePropMask().eval()
    generator = torch.Generator().manual_seed(2)
    batch = GuideBatch(
        images=torch.randn((2, 1, 32, 32), generator=generator),
        masks=(torch.rand((2, 1, 32, 32), generator=generator) > 0.5).float(),
        window=(10.0, 90.0),
    )
    guides = InstanceGuides(batch=batch, window=side, median_side=side / 2, median_area=side**2 / 4, instances=2)
    bands: list[tuple[int, np.ndarray]] = []
    stitch_probability(ArrayRegionReader(image), network, guides, lambda top, rows: bands.append((top, rows.copy())))
    assert [top for top, _ in bands] == sorted(top for top, _ in bands) and bands[0][0] == 0
    stitched = np.concatenate([rows for _, rows in bands])
    for (top, rows), (following, _) in zip(bands, bands[1:]):
        assert top + len(rows) == following  # consecutive, complete bands
    assert stitched.shape == shape and stitched.dtype == np.float32
    expected = reference_probability(image, network, guides)
    np.testing.assert_allclose(stitched, expected, atol=2e-6, rtol=0)
    assert stitched.std() > 0.01  # the windows really differ
    again: list[np.ndarray] = []
    stitch_probability(
        ArrayRegionReader(image), network, guides, lambda top, rows: again.append(rows.copy()), batch_size
    )
    np.testing.assert_allclose(np.concatenate(again), stitched, atol=1e-6, rtol=0)
