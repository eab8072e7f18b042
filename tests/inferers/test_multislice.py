"""Several annotated slices per object: every guide keeps its mask, slices between two guides fuse both sides."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GuideCopyPropMask, OracleBox2Mask, OraclePropMask, object_volume

from pam_monai.errors import InferenceSettingError, PromptError
from pam_monai.inferers import PropagationInferer
from pam_monai.networks import build_propmask

SHAPE = (64, 64, 60)


def disc(radius: float, centre: tuple[float, float] = (32, 32)) -> np.ndarray:
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def rod(first: int, last: int, radius: float = 14.0, centre: tuple[float, float] = (32, 32)) -> np.ndarray:
    label = np.zeros(SHAPE, dtype=bool)
    label[:, :, first : last + 1] = disc(radius, centre)[:, :, None]
    return label


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def extent(mask: np.ndarray) -> tuple[int, int]:
    covered = np.nonzero(mask.any(axis=(0, 1)))[0]
    return int(covered[0]), int(covered[-1])


def test_every_guide_keeps_its_drawn_mask_and_the_object_is_found() -> None:
    truth = rod(8, 52)
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    for k in (15, 30, 44):
        prompt[..., k] = truth[..., k]
    drawn = disc(11)  # smaller than the object: the user's word wins on a guide slice
    prompt[..., 30] = drawn
    result = PropagationInferer(thickness_mm=5).propagate(image, OraclePropMask(), mask_prompt=prompt)
    found = result.labels.numpy() > 0
    assert np.array_equal(found[..., 30], drawn)
    for k in (15, 44):
        assert np.array_equal(found[..., k], truth[..., k])
    assert dice(found, truth) > 0.9 and extent(found) == (8, 52)
    assert result.prompt_slices == {1: [15, 30, 44]}
    assert sorted(result.guides[1]) == [15, 30, 44] and torch.equal(result.guides[1][30], torch.from_numpy(drawn))


def test_labels_on_their_own_slice_sets_in_one_call() -> None:
    first, second = rod(5, 30, 10, (16, 16)), rod(20, 55, 10, (46, 46))
    truth = first.astype(np.int16) + 2 * second.astype(np.int16)
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    for k in (10, 25):
        prompt[..., k] = np.where(first[..., k], 1, prompt[..., k])
    for k in (25, 40, 50):
        prompt[..., k] = np.where(second[..., k], 2, prompt[..., k])
    result = PropagationInferer(thickness_mm=6).propagate(image, OraclePropMask(), mask_prompt=prompt)
    labels = result.labels.numpy()
    for value, obj, ends in ((1, first, (5, 30)), (2, second, (20, 55))):
        assert dice(labels == value, obj) > 0.9 and extent(labels == value) == ends
    assert result.prompt_slices == {1: [10, 25], 2: [25, 40, 50]}


def test_boxes_on_several_slices_mixed_with_a_mask() -> None:
    truth = rod(6, 54)
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    prompt[..., 12] = truth[..., 12]
    box = (16, 16, 48, 48)
    result = PropagationInferer(thickness_mm=6).propagate(
        image, OraclePropMask(), OracleBox2Mask(), mask_prompt=prompt, boxes=[(box, 30), (box, 45)]
    )
    found = result.labels.numpy() > 0
    assert dice(found, truth) > 0.9 and extent(found) == (6, 54)
    assert result.prompt_slices == {1: [12, 30, 45]}
    assert result.guides[1][30].sum() == truth[..., 30].sum()  # Box2Mask's mask is the guide
    with pytest.raises(PromptError, match="slice 12 has two prompts for label 1"):
        PropagationInferer().propagate(image, OraclePropMask(), OracleBox2Mask(), mask_prompt=prompt, boxes=[(box, 12)])


def _two_guides(fusion: str) -> np.ndarray:
    truth = rod(5, 20, 8) | rod(21, 55, 16)  # edges at both guides (GuideCopy ignores the image)
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    prompt[..., 10] = disc(8)
    prompt[..., 30] = disc(16)
    inferer = PropagationInferer(
        thickness_mm=30,
        fusion=fusion,
        max_shift_px=0,
        keep_connected=False,
        interpolation_weight=0.0,
        outline_weight=0.0,
    )  # the votes alone
    result = inferer.propagate(image, GuideCopyPropMask(), mask_prompt=prompt)
    return result.labels.numpy().sum(axis=(0, 1))


def test_distance_fusion_follows_the_nearer_guide_and_mean_fusion_averages() -> None:
    large = int(disc(16).sum())  # the guide at slice 30; the one at slice 10 is a quarter of it
    distance = _two_guides("distance")
    assert all(distance[k] < 0.4 * large for k in range(11, 20))  # nearer the small guide
    assert all(distance[k] > 0.9 * large for k in range(21, 30))  # nearer the large one
    mean = _two_guides("mean")
    # Equal weights: the ring only the large guide votes for gets 0.5, not more, so about the small disc stays.
    assert all(mean[k] < 0.4 * large for k in range(11, 30))
    # Beyond the outermost guides each side propagates alone, the same for both rules.
    assert np.array_equal(distance[:10], mean[:10]) and np.array_equal(distance[31:], mean[31:])


@pytest.mark.parametrize("prompt_kind", ["mask", "box"])
def test_one_slice_prompts_are_bit_identical_under_either_rule(prompt_kind: str) -> None:
    """The fusion rule only weighs slices between two guides: a one-slice prompt gives the labels it gave before
    the rule existed (``"mean"`` is that rule: one vote per prediction)."""
    truth = rod(10, 50, 12)
    image = torch.from_numpy(object_volume(truth))
    torch.manual_seed(0)
    network = build_propmask("light", input_size=64).eval()
    kwargs: dict = {"box": (16, 16, 48, 48), "slice_index": 30} if prompt_kind == "box" else {}
    if prompt_kind == "mask":
        prompt = np.zeros(SHAPE, dtype=np.int16)
        prompt[..., 30] = truth[..., 30]
        kwargs["mask_prompt"] = prompt
    outputs = [
        PropagationInferer(thickness_mm=6, fusion=fusion, keep_connected=False).propagate(
            image, network, OracleBox2Mask(), **kwargs
        )
        for fusion in ("distance", "mean")
    ]
    assert outputs[0].slices_predicted == outputs[1].slices_predicted > 0
    assert torch.equal(outputs[0].labels, outputs[1].labels)


def test_an_unknown_fusion_rule_is_named() -> None:
    with pytest.raises(InferenceSettingError, match="fusion must be one of distance, mean"):
        PropagationInferer(fusion="max")
