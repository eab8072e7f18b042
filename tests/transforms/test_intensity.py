from __future__ import annotations

import numpy as np
import pytest
import torch

from pam_monai.transforms import (
    GuidedIntensityWindow,
    GuidedIntensityWindowd,
    apply_window,
    candidate_windows,
    guided_window,
    pooled_foreground_window,
)


def test_guided_window_uses_only_the_foreground_percentiles() -> None:
    image = torch.zeros(50, 50)
    image[10:30, 10:30] = torch.linspace(100, 300, 400).reshape(20, 20)
    mask = image > 0
    lo, hi = guided_window(image, mask)
    assert lo == pytest.approx(float(np.percentile(image[mask].numpy(), 0.5)), rel=1e-4)
    assert hi == pytest.approx(float(np.percentile(image[mask].numpy(), 99.5)), rel=1e-4)


def test_window_maps_to_minus_one_one_and_clips() -> None:
    out = apply_window(torch.tensor([-50.0, 100.0, 200.0, 300.0, 900.0]), 100.0, 300.0)
    assert out.tolist() == pytest.approx([-1.0, -1.0, 0.0, 1.0, 1.0])


def test_constant_foreground_gets_a_usable_window() -> None:
    image = torch.zeros(20, 20)
    image[5:10, 5:10] = 70.0
    lo, hi = guided_window(image, image > 0)
    assert lo < 70.0 < hi
    normalised = GuidedIntensityWindow()(image, image > 0)
    assert normalised[6, 6] == pytest.approx(0.0, abs=1e-4)
    assert normalised[0, 0] == -1.0


def test_empty_mask_and_shape_mismatch_are_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        guided_window(torch.ones(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="same shape"):
        guided_window(torch.ones(4, 4), torch.ones(4, 5))


@pytest.mark.parametrize("shape", [(8, 8), (3, 8, 8)])
def test_dictionary_wrapper_normalises_each_key_with_the_guide_window(shape: tuple[int, ...]) -> None:
    guide = torch.arange(64, dtype=torch.float32).reshape(8, 8)
    mask = guide >= 32
    data = {"image": torch.full(shape, 47.5), "guide": guide, "mask": mask if len(shape) == 2 else mask.expand(shape)}
    out = GuidedIntensityWindowd("image", mask_key="mask", guide_image_key="guide" if len(shape) == 2 else None)(data)
    assert out["image"].shape == shape
    if len(shape) == 2:
        assert out["image"].abs().max() < 0.05


def test_candidate_windows_are_96_ordered_pairs() -> None:
    pixels = torch.randn(40, 40) * 10 + 50
    windows = candidate_windows(pixels)
    assert windows.shape == (96, 2)
    assert bool((windows[:, 1] > windows[:, 0]).all())
    assert windows[0, 0] == pytest.approx(float(np.percentile(pixels.numpy(), 5)), rel=1e-3)


def test_pooled_window_ignores_small_candidates_and_falls_back_to_none() -> None:
    pixels = torch.zeros(16, 16)
    pixels[4:12, 4:12] = 10 + torch.rand(8, 8)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 0, 0:5] = True  # 5 px: below the 10 px minimum
    lo, hi = pooled_foreground_window(pixels, masks)
    assert 10 <= lo < hi <= 11
    assert pooled_foreground_window(pixels, masks[1:]) is None
