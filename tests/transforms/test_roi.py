from __future__ import annotations

import pytest
import torch

from pam_monai.transforms import RoIWindow, SquareRoICrop, SquareRoICropd, crop_resize, paste_back, square_roi


@pytest.mark.parametrize(
    "box,scale,expected_size",
    [((10, 10, 29, 19), 1.5, 30), ((0, 0, 3, 3), 1.5, 16), ((5, 40, 44, 59), 1.0, 40), ((20, 20, 20, 20), 2.0, 16)],
)
def test_square_roi_is_centred_and_sized(box: tuple[int, int, int, int], scale: float, expected_size: int) -> None:
    mask = torch.zeros(64, 64, dtype=torch.bool)
    r0, c0, r1, c1 = box
    mask[r0 : r1 + 1, c0 : c1 + 1] = True
    window = square_roi(mask, scale)
    assert window.size == expected_size
    assert window.top <= r0 and window.top + window.size > r1
    assert window.left <= c0 and window.left + window.size > c1


def test_empty_mask_has_no_roi() -> None:
    with pytest.raises(ValueError, match="empty"):
        square_roi(torch.zeros(8, 8, dtype=torch.bool))


@pytest.mark.parametrize("window", [RoIWindow(10, 12, 32), RoIWindow(-8, 40, 32), RoIWindow(-5, -5, 80)])
def test_crop_then_paste_back_is_exact_at_the_same_size(window: RoIWindow) -> None:
    slices = torch.rand(3, 64, 60)
    crop = crop_resize(slices, window, window.size, pad_value=-7.0)
    assert crop.shape == (3, window.size, window.size)
    restored = paste_back(crop, window, 64, 60)
    rows, cols, _, _ = window.clipped(64, 60)
    assert torch.equal(restored[:, rows, cols], slices[:, rows, cols])
    assert restored.sum() == pytest.approx(slices[:, rows, cols].sum().item())
    if window.top < 0:
        assert (crop[:, : -window.top] == -7.0).all()


@pytest.mark.parametrize("out_size", [16, 64, 224])
def test_resize_round_trip_keeps_a_smooth_image(out_size: int) -> None:
    ramp = torch.linspace(0, 1, 40)[None, :, None].expand(1, 40, 40).contiguous()
    window = RoIWindow(0, 0, 40)
    back = paste_back(crop_resize(ramp, window, out_size), window, 40, 40)
    assert torch.allclose(back[:, 4:-4, 4:-4], ramp[:, 4:-4, 4:-4], atol=0.04)


def test_window_outside_the_slice_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        RoIWindow(100, 100, 10).clipped(50, 50)


def test_array_and_dictionary_crop_agree() -> None:
    mask = torch.zeros(50, 50, dtype=torch.bool)
    mask[20:30, 15:25] = True
    stack = torch.rand(2, 50, 50)
    array = SquareRoICrop(out_size=32)(stack, mask)
    out = SquareRoICropd(["image", "label"], mask_key="mask", out_size=32, nearest_keys="label")(
        {"image": stack, "label": mask[None].float(), "mask": mask}
    )
    assert torch.equal(array, out["image"])
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0}
    assert out["roi_window"] == square_roi(mask)
