"""Propagation with an oracle network that returns the true mask of any slice it is asked about."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, ellipsoid, object_volume
from monai.data import MetaTensor

from pam_monai.errors import PromptError
from pam_monai.inferers import PropagationInferer, neighbourhood_size

SHAPE = (64, 56, 70)


def cylinder(shape: tuple[int, int, int], axis: int, first: int, last: int, radius: float = 14.0) -> np.ndarray:
    """A round rod along ``axis`` from slice ``first`` to ``last`` (flat ends, so its extent is exact)."""
    moved = np.moveaxis(np.zeros(shape, dtype=bool), axis, 0)
    rows, cols = np.meshgrid(np.arange(moved.shape[1]), np.arange(moved.shape[2]), indexing="ij")
    disc = (rows - moved.shape[1] / 2) ** 2 + (cols - moved.shape[2] / 2) ** 2 <= radius**2
    moved[first : last + 1] = disc
    return np.moveaxis(moved, 0, axis)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def extent(mask: np.ndarray, axis: int) -> tuple[int, int]:
    covered = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    return int(covered[0]), int(covered[-1])


def prompt_on(label: np.ndarray, axis: int, index: int) -> np.ndarray:
    prompt = np.zeros_like(label, dtype=np.int16)
    np.moveaxis(prompt, axis, 0)[index] = np.moveaxis(label, axis, 0)[index]
    return prompt


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("first,last,prompt_index", [(10, 45, 20), (0, 30, 29), (5, 49, 5)])
def test_covers_exactly_the_object_along_each_axis(axis: int, first: int, last: int, prompt_index: int) -> None:
    truth = cylinder(SHAPE, axis, first, min(last, SHAPE[axis] - 1))
    image = object_volume(truth)
    network = OraclePropMask()
    result = PropagationInferer(thickness_mm=6).propagate(
        torch.from_numpy(image), network, mask_prompt=prompt_on(truth, axis, prompt_index), axis=axis
    )
    found = result.labels.numpy() > 0
    assert extent(found, axis) == extent(truth, axis)
    assert dice(found, truth) > 0.93
    assert result.rounds >= 2
    # Nothing outside the object's extent is ever asked for beyond one neighbourhood.
    assert result.slices_predicted <= (last - first + 1) + 2 * 6


def test_object_touching_both_volume_edges_stops_at_edges() -> None:
    truth = cylinder(SHAPE, 2, 0, SHAPE[2] - 1)
    result = PropagationInferer(thickness_mm=10).propagate(
        torch.from_numpy(object_volume(truth)), OraclePropMask(), mask_prompt=prompt_on(truth, 2, 35), axis=2
    )
    assert extent(result.labels.numpy() > 0, 2) == (0, SHAPE[2] - 1)
    assert result.slices_predicted == SHAPE[2] - 1


@pytest.mark.parametrize("spacing,expected_z", [(1.0, 20), (2.0, 10), (5.0, 4), (0.25, 40)])
def test_thickness_uses_spacing_along_the_axis(spacing: float, expected_z: int) -> None:
    assert neighbourhood_size(20.0, spacing, 40) == expected_z
    truth = cylinder(SHAPE, 2, 0, SHAPE[2] - 1)
    network = OraclePropMask()
    affine = torch.diag(torch.tensor([1.0, 1.0, spacing, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.from_numpy(object_volume(truth)), affine=affine)
    PropagationInferer(max_batch=256).propagate(image, network, mask_prompt=prompt_on(truth, 2, 35), axis=2)
    # Round 1 runs both directions in one batch: slices 0..34 lie below the prompt, 36..69 above it.
    assert network.calls[0] == min(expected_z, 35) + min(expected_z, 34)


def test_output_keeps_metadata_and_grid() -> None:
    truth = ellipsoid(SHAPE, (32, 28, 35), (15, 12, 20))
    affine = torch.tensor(
        [[0, -0.8, 0, 10.0], [0.9, 0, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1.0]], dtype=torch.float64
    )
    image = MetaTensor(torch.from_numpy(object_volume(truth))[None], affine=affine)
    labels = PropagationInferer()(image, OraclePropMask(), mask_prompt=prompt_on(truth, 2, 35), axis=2)
    assert isinstance(labels, MetaTensor)
    assert tuple(labels.shape) == (1, *SHAPE)
    assert torch.allclose(labels.affine, affine)
    assert dice(labels[0].numpy() > 0, truth) > 0.85


def test_multi_label_prompt_gives_multi_label_output() -> None:
    first = cylinder(SHAPE, 2, 5, 30, radius=8)
    second = np.roll(cylinder(SHAPE, 2, 20, 60, radius=8), 22, axis=0)
    truth = first.astype(np.int16) + 2 * (second & ~first)
    image = object_volume(truth)
    prompt = prompt_on(truth, 2, 25)
    labels = (
        PropagationInferer(thickness_mm=8)
        .propagate(torch.from_numpy(image), OraclePropMask(), mask_prompt=prompt, axis=2)
        .labels.numpy()
    )
    assert set(np.unique(labels)) == {0, 1, 2}
    assert extent(labels == 1, 2) == (5, 30)
    assert extent(labels == 2, 2) == (20, 60)
    assert dice(labels == 2, truth == 2) > 0.9


def test_unconnected_predictions_are_removed() -> None:
    truth = cylinder(SHAPE, 2, 10, 40)
    image = object_volume(truth)
    # A second bright object in the same slices but not in the prompt: the oracle "sees" it inside the RoI.
    other = np.roll(cylinder(SHAPE, 2, 10, 40, radius=3), 20, axis=0)
    image[other] = 100.0
    labels = (
        PropagationInferer()
        .propagate(torch.from_numpy(image), OraclePropMask(), mask_prompt=prompt_on(truth, 2, 25), axis=2)
        .labels.numpy()
    )
    assert not (labels[other & ~truth] > 0).any()


def test_box_prompt_goes_through_box2mask() -> None:
    truth = cylinder(SHAPE, 2, 12, 50)
    rows, cols = np.nonzero(truth[:, :, 30])
    box = (rows.min(), cols.min(), rows.max(), cols.max())
    result = PropagationInferer(thickness_mm=8).propagate(
        torch.from_numpy(object_volume(truth)), OraclePropMask(), OracleBox2Mask(), box=box, slice_index=30, axis=2
    )
    found = result.labels.numpy() > 0
    assert extent(found, 2) == (12, 50)
    assert dice(found, truth) > 0.93
    assert result.seconds["box2mask"] > 0


def test_box3d_starts_from_several_slices_and_stays_in_the_box() -> None:
    truth = cylinder(SHAPE, 2, 5, 60)
    rows, cols = np.nonzero(truth[:, :, 30])
    box3d = (rows.min(), cols.min(), 15, rows.max(), cols.max(), 45)
    result = PropagationInferer(thickness_mm=8).propagate(
        torch.from_numpy(object_volume(truth)), OraclePropMask(), OracleBox2Mask(), box3d=box3d, axis=2
    )
    assert len(result.prompt_slices[1]) == 3
    found = result.labels.numpy() > 0
    assert extent(found, 2) == (15, 45)
    assert result.prompt_slices[1] == [22, 30, 38]
    # Seeds propagate up to their neighbouring seed, so slices between seeds get one vote from each side.
    between, outside = 2 * (30 - 22 - 1 + 38 - 30 - 1), (22 - 15) + (45 - 38)
    assert result.slices_predicted == between + outside


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({}, "give a prompt"),
        ({"box3d": (1, 2, 3, 9, 9, 9), "boxes": [((1, 1, 10, 10), 3)]}, "on its own"),
        ({"boxes": [((1, 1, 10, 10), 3), ((10, 10, 20, 90), 5)]}, "outside"),
        ({"box": (1, 1, 10, 10)}, "slice_index"),
        ({"box": (10, 10, 5, 20), "slice_index": 3}, "inverted"),
        ({"box": (10, 10, 10, 20), "slice_index": 3}, "zero area"),
        ({"box": (10, 10, 20, 90), "slice_index": 3}, "outside"),
        ({"box": (10, 10, 20, 20), "slice_index": 99}, "out of range"),
        ({"box3d": (1, 2, 3)}, "6 numbers"),
    ],
)
def test_bad_prompts_raise_clear_errors(kwargs: dict, message: str) -> None:
    image = torch.zeros(SHAPE)
    with pytest.raises(PromptError, match=message):
        PropagationInferer().propagate(image, OraclePropMask(), OracleBox2Mask(), **kwargs)


def test_bad_images_raise_clear_errors() -> None:
    truth = cylinder(SHAPE, 2, 10, 40)
    prompt = prompt_on(truth, 2, 20)
    with pytest.raises(ValueError, match="3D"):
        PropagationInferer().propagate(torch.zeros(64, 56), OraclePropMask(), mask_prompt=prompt)
    image = torch.from_numpy(object_volume(truth))
    image[3, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PropagationInferer().propagate(image, OraclePropMask(), mask_prompt=prompt)
    with pytest.raises(PromptError, match="grid"):
        PropagationInferer().propagate(torch.zeros(SHAPE), OraclePropMask(), mask_prompt=prompt[:-1])
    with pytest.raises(PromptError, match="empty"):
        PropagationInferer().propagate(torch.zeros(SHAPE), OraclePropMask(), mask_prompt=np.zeros(SHAPE))


def test_prompts_on_blank_slices_are_rejected_and_blank_box3d_seeds_skipped() -> None:
    truth = cylinder(SHAPE, 2, 10, 60)
    image = torch.from_numpy(object_volume(truth))
    image[:, :, 50:] = 0.0  # padding: the scan ends at slice 49
    rows, cols = np.nonzero(truth[:, :, 30])
    box = (rows.min(), cols.min(), rows.max(), cols.max())
    inferer = PropagationInferer(thickness_mm=8)
    with pytest.raises(PromptError, match="slice 55 is blank"):
        inferer.propagate(image, OraclePropMask(), mask_prompt=prompt_on(truth, 2, 55))
    with pytest.raises(PromptError, match="slice 55 is blank"):
        inferer.propagate(image, OraclePropMask(), OracleBox2Mask(), box=box, slice_index=55, axis=2)
    with pytest.raises(PromptError, match=r"blank .* seed slices \[55, 58, 61\]"):
        inferer.propagate(image, OraclePropMask(), OracleBox2Mask(), box3d=(*box[:2], 52, *box[2:], 64), axis=2)
    result = inferer.propagate(image, OraclePropMask(), OracleBox2Mask(), box3d=(*box[:2], 30, *box[2:], 66), axis=2)
    assert result.prompt_slices[1] == [39, 48]


def test_real_network_runs_end_to_end() -> None:
    from pam_monai.networks import build_box2mask, build_propmask

    truth = cylinder((40, 40, 12), 2, 2, 9, radius=8)
    result = PropagationInferer(thickness_mm=3).propagate(
        torch.from_numpy(object_volume(truth)),
        build_propmask("light", input_size=64).eval(),
        build_box2mask("light", input_size=64).eval(),
        box=(12, 12, 28, 28),
        slice_index=5,
        axis=2,
    )
    assert result.labels.shape == (40, 40, 12)
    assert result.labels.dtype == torch.int16


class CountingOracle(OraclePropMask):
    """The oracle, counting the query slices it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.queries += len(queries)
        return super().forward_indexed(guides, masks, queries, index)


class LeftHalfOracle(OraclePropMask):
    """A network with a left-right bias: it only ever finds the left half of the object in its input."""

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        heads = super().forward_indexed(guides, masks, queries, index)
        out = []
        for head in heads:
            head = head.clone()
            head[:, 1, :, head.shape[-1] // 2 :] = -10.0
            head[:, 0, :, head.shape[-1] // 2 :] = 10.0
            out.append(head)
        return out


def test_flip_tta_asks_twice_and_keeps_an_equivariant_result() -> None:
    truth = cylinder(SHAPE, 2, 10, 50)
    image = torch.from_numpy(object_volume(truth))
    plain, mirrored = CountingOracle(), CountingOracle()
    prompt = prompt_on(truth, 2, 30)
    base = PropagationInferer(thickness_mm=8).propagate(image, plain, mask_prompt=prompt, axis=2)
    tta = PropagationInferer(thickness_mm=8, flip_tta=True).propagate(image, mirrored, mask_prompt=prompt, axis=2)
    assert mirrored.queries == 2 * plain.queries
    # the oracle's coarse heads subsample every other pixel, which a mirror shifts by one: boundary pixels may move
    assert dice(base.labels.numpy() > 0, tta.labels.numpy() > 0) > 0.99


def test_flip_tta_averages_the_mirrored_prediction() -> None:
    truth = cylinder(SHAPE, 2, 20, 40)
    image = torch.from_numpy(object_volume(truth))
    prompt = prompt_on(truth, 2, 30)
    settings = {"thickness_mm": 6, "keep_connected": False, "max_shift_px": 0, "outline_weight": 0.0}  # network alone
    plain = PropagationInferer(**settings)
    tta = PropagationInferer(**settings, flip_tta=True)
    one_sided = plain.propagate(image, LeftHalfOracle(), mask_prompt=prompt, axis=2).labels.numpy() > 0
    averaged = tta.propagate(image, LeftHalfOracle(), mask_prompt=prompt, axis=2).labels.numpy() > 0
    # Each view finds a different half; their mean is 0.5 everywhere, which is not > 0.5: only the prompt slice stays.
    assert one_sided[:, :, 31].any()
    assert not averaged[:, :, 31].any() and averaged[:, :, 30].any()
