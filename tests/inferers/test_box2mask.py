"""Box2Mask inference: dynamic windows, the context crop around the box, and the fall-backs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask

from pam_monai.inferers.box2mask import Box2MaskInferer
from pam_monai.inferers.box2masker import box_fit


class RecordingOracle(OracleBox2Mask):
    """The oracle Box2Mask, remembering the crops' bright fraction (how much context it was shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.bright_fractions: list[float] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.bright_fractions.append(float((x > -0.5).float().mean()))
        return super().forward(x)


def disc_slice(size: int = 96, radius: float = 20.0, centre: tuple[float, float] = (48.0, 48.0)) -> torch.Tensor:
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    rng = np.random.default_rng(0)
    return torch.from_numpy(
        np.where(inside, 200.0, 20.0).astype(np.float32) + rng.normal(0, 3, (size, size)).astype(np.float32)
    )


def tight_box(image: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(image.numpy() > 100)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


@pytest.mark.parametrize("context", [1.0, 1.2, 1.5])
def test_mask_is_the_object_and_stays_inside_the_box(context: float) -> None:
    image = disc_slice()
    box = tight_box(image)
    mask = Box2MaskInferer(context=context)(image, OracleBox2Mask(), box=box).numpy()
    truth = image.numpy() > 100
    outside = np.ones_like(mask)
    outside[box[0] : box[2] + 1, box[1] : box[3] + 1] = False
    assert not mask[outside].any()
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.95


def test_context_shows_the_network_the_surroundings() -> None:
    image = disc_slice()
    box = tight_box(image)
    exact, wider = RecordingOracle(), RecordingOracle()
    Box2MaskInferer(context=1.0, more_crops=(), flips=False)(image, exact, box=box)
    Box2MaskInferer(context=1.3, more_crops=(), flips=False)(image, wider, box=box)
    # the final (full-size) pass is the last forward: its crop holds more background with context
    assert wider.bright_fractions[-1] < exact.bright_fractions[-1] - 0.05


def test_context_is_clipped_at_the_slice_border() -> None:
    image = disc_slice(centre=(20.0, 20.0))  # the disc touches the top-left corner
    box = tight_box(image)
    assert box[0] == 0 and box[1] == 0
    mask = Box2MaskInferer(context=1.5)(image, OracleBox2Mask(), box=box).numpy()
    assert mask.shape == image.shape and mask[box[0] : box[2] + 1, box[1] : box[3] + 1].mean() > 0.5


def test_context_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="context must be >= 1"):
        Box2MaskInferer(context=0.9)


@pytest.mark.parametrize("size", [0, 8, 10, 16, 40])
def test_min_crop_widens_small_boxes_only(size: int) -> None:
    masker = Box2MaskInferer(context=1.0, min_crop=size)
    y0, x0, y1, x1 = masker.crop_window((15, 15, 24, 24), (96, 96))  # a 10 x 10 box
    if size <= 10:
        assert (y0, x0, y1, x1) == (15, 15, 24, 24)
    else:
        assert y1 - y0 + 1 >= size and x1 - x0 + 1 >= size and y0 < 15 and y1 > 24
    # clipped at the slice border
    assert masker.crop_window((0, 0, 3, 3), (96, 96))[:2] == (0, 0)


def test_more_crops_and_flips_run_every_crop() -> None:
    image = disc_slice()
    box = tight_box(image)
    single, ensemble = RecordingOracle(), RecordingOracle()
    Box2MaskInferer(more_crops=(), flips=False)(image, single, box=box)
    mask = Box2MaskInferer(more_crops=((1.5, 0), (1.2, 64)), flips=True)(image, ensemble, box=box).numpy()
    # one candidate pass and one final pass per crop (the flips in the final pass's batch)
    assert len(ensemble.bright_fractions) == 3 * len(single.bright_fractions)
    truth = image.numpy() > 100
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.95


def test_crops_that_clip_to_the_same_window_run_once() -> None:
    image = disc_slice()
    box = tight_box(image)
    single, repeated = RecordingOracle(), RecordingOracle()
    alone = Box2MaskInferer(more_crops=(), flips=False)(image, single, box=box)
    twice = Box2MaskInferer(more_crops=((1.2, 0),), flips=False)(image, repeated, box=box)
    assert len(repeated.bright_fractions) == len(single.bright_fractions)
    assert torch.equal(alone, twice)


def test_lower_threshold_gives_a_larger_mask() -> None:
    class SoftOracle(OracleBox2Mask):
        """Foreground probability falling off from the crop's centre: the threshold sets the mask's size."""

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            n, _, h, w = x.shape
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            logit = (0.5 - (rows**2 + cols**2).sqrt()) * 8
            logits = torch.stack((-logit, logit))[None].expand(n, 2, h, w)
            return [logits]

    image = disc_slice()
    box = tight_box(image)
    areas = [int(Box2MaskInferer(threshold=t)(image, SoftOracle(), box=box).sum()) for t in (0.3, 0.5, 0.7)]
    assert areas[0] > areas[1] > areas[2] > 0


def test_box_fit_prefers_a_mask_that_fills_the_box() -> None:
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[0, 5:15, 5:15] = True  # exactly the box
    masks[1, 8:12, 8:12] = True  # inside, reaches no edge
    masks[2, 0:20, 0:20] = True  # spills far outside
    fit = box_fit(masks, (5, 5, 14, 14))
    assert fit[0] == 1.0 and fit[1] == 0.0 and 0.0 < fit[2] < 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"candidate_vote": "best"}, "candidate_vote"), ({"threshold": 1.0}, "threshold"),
     ({"more_crops": ((0.8, 0),)}, "context must be >= 1")],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Box2MaskInferer(**kwargs)


def test_box_vote_keeps_the_window_of_the_box_shaped_candidates() -> None:
    image = disc_slice()
    box = tight_box(image)
    mask = Box2MaskInferer(candidate_vote="box")(image, OracleBox2Mask(), box=box).numpy()
    truth = image.numpy() > 100
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.95
