"""Box2Mask inference: dynamic windows, the context crop around the box, and the fall-backs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask

from pam_monai.inferers.box2mask import Box2MaskInferer


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
    Box2MaskInferer(context=1.0)(image, exact, box=box)
    Box2MaskInferer(context=1.3)(image, wider, box=box)
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
