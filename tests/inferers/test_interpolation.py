"""The shape prior between drawn guides (pam_monai.inferers.interpolation), in propagation and in corrections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GuideCopyPropMask, OracleBox2Mask, object_volume

from pam_monai.errors import InferenceSettingError
from pam_monai.inferers import PropagationInferer, refine_object
from pam_monai.inferers.interpolation import guide_pairs, outline_prior, signed_distance
from pam_monai.inferers.propagation_parts import redraw_residual
from pam_monai.networks import build_propmask
from pam_monai.prompts.core import MaskPrompt

SHAPE = (64, 64, 50)
FIRST, LAST = 8, 40  # the two guides


def tube() -> np.ndarray:
    """A tube whose centre moves from (18, 18) to (44, 44) and whose radius grows from 6 to 12 over slices 4..44."""
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = np.zeros(SHAPE, dtype=bool)
    for k in range(4, 45):
        t = (k - 4) / 40
        centre, radius = 18 + 26 * t, 6 + 6 * t
        truth[:, :, k] = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2
    return truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def two_guides(truth: np.ndarray) -> np.ndarray:
    prompt = np.zeros(SHAPE, dtype=np.int16)
    for k in (FIRST, LAST):
        prompt[..., k] = truth[..., k]
    return prompt


def between(found: np.ndarray, truth: np.ndarray) -> float:
    return dice(found[..., FIRST + 1 : LAST], truth[..., FIRST + 1 : LAST])


def test_signed_distance_is_negative_inside_and_positive_outside() -> None:
    rows, cols = np.mgrid[:41, :41]
    disc = (rows - 20) ** 2 + (cols - 20) ** 2 <= 100
    distance = signed_distance(disc)
    assert distance[20, 20] == pytest.approx(-(101**0.5), abs=0.01)  # to the nearest background pixel
    assert distance[20, 35] == pytest.approx(5, abs=0.6)
    assert ((distance < 0) == disc).all()
    assert (signed_distance(np.ones((4, 4), bool)) < 0).all()


def test_pairs_join_consecutive_drawn_guides_only() -> None:
    full, empty = torch.ones((8, 8), dtype=torch.bool), torch.zeros((8, 8), dtype=torch.bool)
    seeds = [
        MaskPrompt(10, full), MaskPrompt(20, full), MaskPrompt(25, full, box=(0, 0, 7, 7)), MaskPrompt(30, full),
        MaskPrompt(31, full), MaskPrompt(40, empty), MaskPrompt(50, full),
    ]  # fmt: skip
    # 20-30: a box between (Box2Mask's mask); 30-31: nothing between; 31-50: an empty guide ends the object.
    assert [(p[0], p[2]) for p in guide_pairs(seeds)] == [(10, 20)]


def test_the_prior_beats_the_votes_between_two_guides_of_a_moving_tube() -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    scores = {}
    for weight in (0.0, 0.7):
        inferer = PropagationInferer(thickness_mm=40, max_shift_px=0, interpolation_weight=weight)
        found = inferer.propagate(image, GuideCopyPropMask(), mask_prompt=two_guides(truth)).labels.numpy() > 0
        assert np.array_equal(found[..., FIRST], truth[..., FIRST]) and np.array_equal(
            found[..., LAST], truth[..., LAST]
        )
        # Beyond the outermost guides there is no prior: the same either way.
        scores[weight] = (between(found, truth), found[..., :FIRST], found[..., LAST + 1 :])
    assert scores[0.7][0] > 0.85 and scores[0.7][0] > scores[0.0][0] + 0.15
    assert np.array_equal(scores[0.7][1], scores[0.0][1]) and np.array_equal(scores[0.7][2], scores[0.0][2])


def test_an_outer_guide_gives_a_block_the_prior_of_the_whole_stretch() -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    first = 28  # the block 28..49 holds the guide at 40; the one at 8 lies before it
    prompt = two_guides(truth)[..., first:]
    prompt[..., : FIRST - first] = 0
    inferer = PropagationInferer(thickness_mm=40, max_shift_px=0)
    outer = [MaskPrompt(FIRST - first, torch.from_numpy(truth[..., FIRST]))]
    network = GuideCopyPropMask()
    found = {
        n: inferer.propagate(image[..., first:], network, mask_prompt=prompt, outer_guides=o).labels.numpy() > 0
        for n, o in (("alone", ()), ("outer", outer))
    }
    part = truth[..., first:LAST]
    assert dice(found["outer"][..., : LAST - first], part) > dice(found["alone"][..., : LAST - first], part) + 0.05


def test_corrections_use_the_same_prior() -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    previous = np.zeros(SHAPE, dtype=np.int16)
    previous[..., FIRST : LAST + 5] = truth[..., FIRST][..., None]  # one guide's copy: wrong between the guides
    scores = {}
    for weight in (0.0, 0.7):
        labels, guides, _, _ = refine_object(
            PropagationInferer(thickness_mm=40, max_shift_px=0, interpolation_weight=weight),
            image, GuideCopyPropMask(), torch.from_numpy(previous), 1, {FIRST: torch.from_numpy(truth[..., FIRST])},
            {LAST: torch.from_numpy(truth[..., LAST])}, axis=2, spacing=(1.0, 1.0, 1.0),
        )  # fmt: skip
        assert sorted(guides) == [FIRST, LAST]
        scores[weight] = between(labels.numpy() > 0, truth)
    assert scores[0.7] > 0.85 and scores[0.7] > scores[0.0] + 0.15


@pytest.mark.parametrize("prompt_kind", ["mask", "box"])
def test_one_slice_prompts_are_bit_identical_with_or_without_the_prior(prompt_kind: str) -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    torch.manual_seed(0)
    network = build_propmask("light", input_size=64).eval()
    kwargs: dict = {"box": (20, 20, 44, 44), "slice_index": 30} if prompt_kind == "box" else {}
    if prompt_kind == "mask":
        prompt = np.zeros(SHAPE, dtype=np.int16)
        prompt[..., 30] = truth[..., 30]
        kwargs["mask_prompt"] = prompt
    outputs = [
        PropagationInferer(thickness_mm=6, walker_weight=0.7, interpolation_weight=w).propagate(
            image, network, OracleBox2Mask(), **kwargs
        )
        for w in (0.0, 0.7, 1.0)
    ]
    assert outputs[0].slices_predicted > 0
    assert all(torch.equal(outputs[0].labels, o.labels) for o in outputs[1:])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"interpolation_weight": 1.5}, "interpolation_weight must be in \\[0, 1\\], got 1.5"),
        ({"interpolation_weight": -0.1}, "interpolation_weight must be in \\[0, 1\\], got -0.1"),
        ({"interpolation_softness": 0.0}, "interpolation_softness must be positive, got 0.0"),
        ({"outline_weight": 0.5}, "outline_weight must be in \\[0, 0.5\\), got 0.5"),
        ({"outline_weight": -0.1}, "outline_weight must be in \\[0, 0.5\\), got -0.1"),
        ({"residual_weight": 1.5}, "residual_weight must be in \\[0, 1\\], got 1.5"),
        ({"residual_weight": -0.1}, "residual_weight must be in \\[0, 1\\], got -0.1"),
    ],
)
def test_bad_prior_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(InferenceSettingError, match=message):
        PropagationInferer(**settings)


def test_the_outline_prior_is_a_soft_copy_of_the_mask() -> None:
    mask = torch.zeros((32, 32), dtype=torch.bool)
    mask[8:24, 10:20] = True
    prior = outline_prior(mask)
    assert prior.dtype == torch.float32 and prior.shape == mask.shape
    assert bool(((prior > 0.5) == mask).all())  # thresholded at 0.5 it is the mask itself
    assert float(prior[16, 15]) > 0.99 and float(prior[2, 2]) < 0.01  # deep inside / far outside
    assert float(outline_prior(mask, softness=4.0)[16, 10]) < float(prior[16, 10])  # softer at the edge


class UnsureCopy(GuideCopyPropMask):
    """Copies its guide's mask at a foreground probability of ``p`` (0: predicts that the object has ended)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.logit = float(np.log(p / (1 - p))) if p > 0 else -10.0

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        fg = torch.where(masks[index] > 0.5, self.logit, -10.0)
        logits = torch.cat((torch.zeros_like(fg), fg), dim=1)
        return [logits, logits[..., ::2, ::2], logits[..., ::4, ::4]]


@pytest.mark.parametrize("outline_weight", [0.0, 0.45])
def test_the_guide_outline_keeps_an_unsure_mask_and_never_outlives_the_network(outline_weight: float) -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    prompt[..., 25] = truth[..., 25]
    # No continuity constraint: it judges the network's own mask (before the outline), here empty at 0.4.
    inferer = PropagationInferer(thickness_mm=4, keep_connected=False, max_shift_px=0, outline_weight=outline_weight)
    unsure = inferer.propagate(image, UnsureCopy(0.4), mask_prompt=prompt).labels.numpy() > 0
    ended = inferer.propagate(image, UnsureCopy(0.0), mask_prompt=prompt).labels.numpy() > 0
    covered = np.nonzero(unsure.any(axis=(0, 1)))[0].tolist()
    if outline_weight == 0:  # 0.4 everywhere: the first predicted slices are empty, the prompt slice stays alone
        assert covered == [25]
    else:  # 0.55 * 0.4 + 0.45 * (about 1 inside the guide) > 0.5: the mask goes on, at about the guide's size
        assert len(covered) > 20 and all(unsure[..., k].sum() > 0.8 * truth[..., 25].sum() for k in (22, 28))
    # Where the network says the object has ended, the outline alone (< 0.5) does not go on.
    assert np.nonzero(ended.any(axis=(0, 1)))[0].tolist() == [25]


class ErodingCopy(GuideCopyPropMask):
    """Copies its guide's mask eroded by ``px`` pixels onto every query, the guide slice itself included: a network
    that redraws every outline too small (as on boundaries the image does not show)."""

    def __init__(self, px: int = 2) -> None:
        super().__init__()
        self.px = px

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        kernel = 2 * self.px + 1
        eroded = 1.0 - torch.nn.functional.max_pool2d(1.0 - masks[index], kernel, stride=1, padding=self.px)
        fg = torch.where(eroded > 0.5, 10.0, -10.0)
        logits = torch.cat((torch.zeros_like(fg), fg), dim=1)
        return [logits, logits[..., ::2, ::2], logits[..., ::4, ::4]]


def test_the_redraw_residual_adds_back_what_the_network_misses_on_its_own_guide() -> None:
    mask = torch.zeros((1, 8, 8))
    mask[0, 2:6, 2:6] = 1.0
    redrawn = mask.clone()
    redrawn[0, 2, 2:6] = 0.2  # one row of the drawn mask redrawn unsure
    redrawn[0, 6, 2:6] = 0.6  # and a spill below it
    probabilities = torch.stack([redrawn[0], torch.zeros(8, 8)])
    out = redraw_residual(probabilities, mask, redrawn, 1.0)
    assert torch.allclose(out[0], mask[0])  # the guide slice comes back exactly
    assert float(out[1, 2, 3]) == pytest.approx(0.8) and float(out[1, 6, 3]) == 0.0  # clipped to [0, 1]
    assert torch.allclose(redraw_residual(probabilities, mask, redrawn, 0.0), probabilities)


@pytest.mark.parametrize("residual_weight", [0.0, 1.0])
def test_the_redraw_residual_stops_a_shrinking_network_from_shrinking(residual_weight: float) -> None:
    truth = tube()
    image = torch.from_numpy(object_volume(truth))
    prompt = np.zeros(SHAPE, dtype=np.int16)
    prompt[..., 25] = truth[..., 25]
    inferer = PropagationInferer(
        thickness_mm=4, keep_connected=False, max_shift_px=0, outline_weight=0.0, residual_weight=residual_weight
    )
    network = ErodingCopy(2)
    found = inferer.propagate(image, network, mask_prompt=prompt).labels.numpy() > 0
    area = float(truth[..., 25].sum())
    if residual_weight == 0:  # the outline shrinks round after round: after three rounds under half the area
        assert found[..., 12].sum() < 0.5 * area and found[..., 38].sum() < 0.5 * area
    else:  # the network's own loss on the guide slice is added back: the guide's size all the way
        assert all(found[..., k].sum() >= 0.95 * area for k in (12, 29, 38))
    # one query more per front and round (the guide slice itself): the first round's two fronts ask 2 x (4 + 1)
    assert network.calls[0] == 2 * (4 + (residual_weight > 0))
