"""The propagation speed-ups give the same results as the straightforward full-slice computations, and the
``amp`` / ``compile`` options leave the CPU path working."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OraclePropMask, ellipsoid, object_volume

from pam_monai.inferers import PropagationInferer
from pam_monai.inferers import propagation_parts as P
from pam_monai.inferers.propagation_finalise import finalise_labels
from pam_monai.networks import build_propmask
from pam_monai.prompts.core import MaskPrompt
from pam_monai.transforms import RoIWindow, paste_back

WINDOWS = [RoIWindow(10, 12, 30), RoIWindow(-7, 40, 33), RoIWindow(30, -5, 41), RoIWindow(-3, -4, 70)]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("size", [16, 33])
def test_paste_region_is_the_nonzero_part_of_paste_back(window: RoIWindow, size: int) -> None:
    prediction = torch.rand(3, size, size)
    full = paste_back(prediction, window, 50, 60)
    part, rows, cols = P.paste_region(prediction, window, 50, 60)
    assert torch.equal(full[:, rows, cols], part)
    rest = full.clone()
    rest[:, rows, cols] = 0
    assert not rest.any()


@pytest.mark.parametrize("window", WINDOWS)
def test_continuity_on_the_window_equals_continuity_on_whole_slices(window: RoIWindow) -> None:
    torch.manual_seed(0)
    height, width = 50, 60
    rows, cols, _, _ = window.clipped(height, width)
    guide = torch.zeros(height, width, dtype=torch.bool)
    r, c = rows.start + (rows.stop - rows.start) // 2, cols.start + (cols.stop - cols.start) // 2
    guide[r - 2 : r + 3, c - 2 : c + 3] = True
    full = torch.zeros(6, height, width)
    full[:, rows, cols] = torch.rand(6, rows.stop - rows.start, cols.stop - cols.start) * 1.2
    expected = P.continuous(full, guide, 2)[:, rows, cols]
    assert torch.equal(P.continuous(full[:, rows, cols], guide[rows, cols], 2), expected)


def test_finalise_on_the_touched_block_equals_the_whole_volume() -> None:
    torch.manual_seed(1)
    shape = (20, 40, 44)
    prob_sum = torch.zeros(2, *shape)
    votes = torch.zeros(2, shape[0])
    prob_sum[0, 4:15, 10:30, 8:28] = torch.rand(11, 20, 20) * 2
    prob_sum[1, 9:18, 15:35, 20:40] = torch.rand(9, 20, 20) * 2
    votes[0, 4:15], votes[1, 9:18] = 2, 1
    votes[0, 7] = 1
    region = P.Region()
    region.add(slice(10, 30), slice(8, 28))
    region.add(slice(15, 35), slice(20, 40))
    seed_masks = [torch.zeros(shape[1:], dtype=torch.bool) for _ in range(2)]
    seed_masks[0][18:22, 15:20] = True
    seed_masks[1][25:29, 30:34] = True
    seeds = [MaskPrompt(9, seed_masks[0], 3), MaskPrompt(12, seed_masks[1], 5)]
    limits = {3: (5, 13, (12, 9, 27, 25)), 5: (0, 19, None)}
    for axis in (0, 2):
        args = (prob_sum, votes, seeds, {3: 0, 5: 1}, [3, 5], limits, axis)
        assert torch.equal(finalise_labels(*args, region), finalise_labels(*args, None))


def test_all_finite_and_lazy_zeros() -> None:
    assert P.all_finite(torch.ones(4, 4, dtype=torch.int16))
    huge = torch.full((8, 8), 3e38)  # finite, but its sum overflows: falls back to the exact check
    assert P.all_finite(huge)
    huge[2, 3] = float("nan")
    assert not P.all_finite(huge)
    zeros = P.lazy_zeros((3, 4, 5), torch.float32, torch.device("cpu"))
    assert zeros.dtype == torch.float32 and zeros.shape == (3, 4, 5) and not zeros.any()


def _tube() -> tuple[np.ndarray, np.ndarray]:
    truth = ellipsoid((48, 48, 40), (24, 24, 20), (12, 10, 14))
    prompt = np.zeros(truth.shape, dtype=np.int16)
    prompt[:, :, 20] = truth[:, :, 20]
    return object_volume(truth), prompt


def test_amp_runs_on_the_cpu_with_a_real_network() -> None:
    image, prompt = _tube()
    torch.manual_seed(0)
    network = build_propmask("light", input_size=64).eval()
    inferer = PropagationInferer(thickness_mm=4, amp=True)
    assert PropagationInferer().amp is False and PropagationInferer().compile is False
    result = inferer.propagate(torch.from_numpy(image), network, mask_prompt=prompt)
    assert result.labels.shape == image.shape and result.labels.dtype == torch.int16
    assert result.slices_predicted > 0


def test_amp_and_compile_keep_the_oracle_result(monkeypatch: pytest.MonkeyPatch) -> None:
    image, prompt = _tube()
    compiled = []
    real_compile = torch.compile

    def eager_compile(fn, **kwargs):  # noqa: ANN001, ANN003, ANN202
        compiled.append(kwargs)
        return real_compile(fn, backend="eager", dynamic=kwargs.get("dynamic"))

    monkeypatch.setattr(torch, "compile", eager_compile)
    plain = PropagationInferer(thickness_mm=4).propagate(torch.from_numpy(image), OraclePropMask(), mask_prompt=prompt)
    inferer = PropagationInferer(thickness_mm=4, amp=True, compile=True)
    network = OraclePropMask()
    fast = inferer.propagate(torch.from_numpy(image), network, mask_prompt=prompt)
    again = inferer.propagate(torch.from_numpy(image), network, mask_prompt=prompt)
    assert len(compiled) == 1 and compiled[0]["dynamic"] is True and compiled[0]["mode"] is None
    assert torch.equal(plain.labels, fast.labels) and torch.equal(plain.labels, again.labels)
    assert plain.rounds == fast.rounds and plain.slices_predicted == fast.slices_predicted
