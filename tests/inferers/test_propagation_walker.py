"""PropagationInferer with the random walker's second opinion (``walker_weight``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, object_volume

from pam_monai.inferers import PropagationInferer

SHAPE = (40, 40, 60)
FIRST, LAST = 15, 40


class OvershootingPropMask(OraclePropMask):
    """The true mask plus a phantom disc at the RoI's centre on every slice: it never stops at the object's end."""

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        size = queries.shape[-1]
        rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        disc = ((rows - size / 2) ** 2 + (cols - size / 2) ** 2 <= (size / 5) ** 2).float()
        fg = torch.maximum((queries > -0.5).float(), disc) * 20 - 10
        logits = torch.cat((-fg, fg), dim=1)
        return [logits, logits[..., ::2, ::2]]


def rod() -> np.ndarray:
    truth = np.zeros(SHAPE, dtype=bool)
    rows, cols = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    truth[..., FIRST : LAST + 1] = (((rows - 20) ** 2 + (cols - 20) ** 2) <= 8**2)[..., None]
    return truth


def slice_extent(mask: np.ndarray) -> tuple[int, int]:
    covered = np.nonzero(mask.any(axis=(0, 1)))[0]
    return int(covered[0]), int(covered[-1])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def segment(inferer: PropagationInferer, truth: np.ndarray, prompt: str) -> np.ndarray:
    image = torch.from_numpy(object_volume(truth))
    if prompt == "mask":
        mask_prompt = np.zeros(SHAPE, dtype=np.int16)
        mask_prompt[..., 28] = truth[..., 28]
        result = inferer.propagate(image, OvershootingPropMask(), mask_prompt=mask_prompt, axis=2)
    else:
        result = inferer.propagate(
            image, OvershootingPropMask(), OracleBox2Mask(), box=(12, 12, 28, 28), slice_index=28, axis=2
        )
    assert "random_walker" in result.seconds
    return result.labels.numpy() > 0


@pytest.mark.parametrize("prompt", ["mask", "box"])
def test_walker_trims_what_the_network_invents_past_the_end(prompt: str) -> None:
    truth = rod()
    alone = segment(PropagationInferer(thickness_mm=8), truth, prompt)
    assert slice_extent(alone) == (0, SHAPE[2] - 1)  # the phantom runs to both volume ends
    helped = segment(PropagationInferer(thickness_mm=8, walker_weight=0.6), truth, prompt)
    first, last = slice_extent(helped)
    assert abs(first - FIRST) <= 1 and abs(last - LAST) <= 1
    assert dice(helped, truth) > 0.9 > dice(alone, truth)


def test_box_prompts_have_their_own_weight() -> None:
    truth = rod()
    inferer = PropagationInferer(thickness_mm=8, walker_weight=0.0, walker_weight_box=0.7)
    assert slice_extent(segment(inferer, truth, "mask")) == (0, SHAPE[2] - 1)
    assert dice(segment(inferer, truth, "box"), truth) > 0.9


def test_zero_weight_is_the_network_alone() -> None:
    truth = rod()
    plain = segment(PropagationInferer(thickness_mm=8), truth, "mask")
    zero = segment(PropagationInferer(thickness_mm=8, walker_weight=0.0), truth, "mask")
    assert np.array_equal(plain, zero)


def test_full_weight_leaves_it_to_the_walker_which_finds_a_clear_object() -> None:
    truth = rod()
    image = torch.from_numpy(object_volume(truth))
    mask_prompt = np.zeros(SHAPE, dtype=np.int16)
    mask_prompt[..., 28] = truth[..., 28]
    found = PropagationInferer(thickness_mm=8, walker_weight=1.0).propagate(
        image, OraclePropMask(), mask_prompt=mask_prompt, axis=2
    )
    assert dice(found.labels.numpy() > 0, truth) > 0.95


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"walker_weight": 1.5}, "walker_weight must be in \\[0, 1\\], got 1.5"),
        ({"walker_weight_box": -0.1}, "walker_weight_box must be in \\[0, 1\\], got -0.1"),
        ({"walker_max_voxels": 0}, "walker_max_voxels must be positive"),
        ({"walker_beta": 0.0}, "walker_beta must be positive, got 0.0"),
    ],
)
def test_bad_walker_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PropagationInferer(**kwargs)


def test_prompt_slice_keeps_the_drawn_mask() -> None:
    truth = rod()
    # A prompt mask that is not what the image shows there: the user's word stands on that slice.
    drawn = np.zeros(SHAPE, dtype=np.int16)
    drawn[10:30, 10:30, 28] = 1
    image = torch.from_numpy(object_volume(truth))
    inferer = PropagationInferer(thickness_mm=8, walker_weight=1.0)
    found = inferer.propagate(image, OvershootingPropMask(), mask_prompt=drawn, axis=2).labels.numpy() > 0
    assert np.array_equal(found[..., 28], drawn[..., 28] > 0)
    assert dice(found[..., FIRST:26], truth[..., FIRST:26]) > 0.9  # elsewhere the walker speaks


def test_prompt_slice_keeps_box2masks_mask() -> None:
    truth = rod()
    image = torch.from_numpy(object_volume(truth))
    args = {"box": (4, 4, 35, 35), "slice_index": 28, "axis": 2}
    alone = PropagationInferer(thickness_mm=8).propagate(image, OvershootingPropMask(), OracleBox2Mask(), **args)
    helped = PropagationInferer(thickness_mm=8, walker_weight_box=1.0).propagate(
        image, OvershootingPropMask(), OracleBox2Mask(), **args
    )
    assert np.array_equal(helped.labels.numpy()[..., 28], alone.labels.numpy()[..., 28])
    assert not np.array_equal(helped.labels.numpy(), alone.labels.numpy())


def test_each_object_gets_its_own_walker() -> None:
    first = rod()
    second = np.zeros(SHAPE, dtype=bool)
    second[2:8, 30:37, 10:50] = True  # a bar away from the rod, longer along the slices
    labels = first.astype(np.int16) + 2 * second
    image = torch.from_numpy(object_volume(labels))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    prompt[..., 28] = labels[..., 28]
    found = (
        PropagationInferer(thickness_mm=8, walker_weight=0.6)
        .propagate(image, OvershootingPropMask(), mask_prompt=prompt, axis=2)
        .labels.numpy()
    )
    assert dice(found == 1, first) > 0.9 and dice(found == 2, second) > 0.9


def test_a_3d_box_stays_inside_its_box_with_the_walker() -> None:
    truth = rod()
    image = torch.from_numpy(object_volume(truth))
    result = PropagationInferer(thickness_mm=8, walker_weight_box=0.7).propagate(
        image, OvershootingPropMask(), OracleBox2Mask(), box3d=(10, 10, 20, 30, 30, 35), axis=2
    )
    found = result.labels.numpy() > 0
    inside = truth.copy()
    inside[..., :20] = False
    inside[..., 36:] = False
    assert slice_extent(found) == (20, 35)
    assert dice(found, inside) > 0.9
