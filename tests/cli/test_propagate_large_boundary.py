"""``propagate-large``'s boundary refinement end to end: learnt from the guides, used only where it helps there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OraclePropMask
from test_propagate2d import dice, discs, mosaic, render

from pam_monai.cli.propagate2d import Propagate2DError, propagate_large_image


class SwollenPropMask(OraclePropMask):
    """The oracle's objects grown by two input pixels: a network whose boundary lies outside the objects."""

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        inside = torch.nn.functional.max_pool2d((queries > -0.5).float(), 5, stride=1, padding=2)
        fg = inside * 20 - 10
        logits = torch.cat((-fg, fg), dim=1)
        return [logits, logits[..., ::2, ::2]]


def _case() -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    truth = mosaic((400, 420), 8, seed=7)
    guide_truth = discs((200, 220), [(60, 70), (135, 150)], [24, 31])
    return truth, render(truth, seed=1), [(render(guide_truth, seed=2), guide_truth > 0)]


def test_refinement_raises_dice_of_a_swollen_network() -> None:
    truth, image, guides = _case()
    plain = propagate_large_image(image, guides, SwollenPropMask(), boundary="network")
    refined = propagate_large_image(image, guides, SwollenPropMask())
    assert plain.boundary == "network" and plain.ring_radius == 0 and plain.guide_dice is None
    assert refined.boundary == "intensity" and refined.ring_radius > 0
    network_dice, refined_dice = refined.guide_dice
    assert refined_dice > network_dice + 0.01
    before, after = dice(plain.labels > 0, truth > 0), dice(refined.labels > 0, truth > 0)
    assert before < 0.95 and after > 0.98, (before, after)
    assert plain.count == refined.count == 8
    summary = refined.summary()
    assert summary["ring_radius"] == refined.ring_radius and len(summary["guide_dice"]) == 2


def test_oracle_keeps_its_instances_and_bad_boundary_fails() -> None:
    """The oracle's edges are blurred by the windows' resampling; the refinement must not lose or merge instances."""
    truth, image, guides = _case()
    refined = propagate_large_image(image, guides, OraclePropMask())
    plain = propagate_large_image(image, guides, OraclePropMask(), boundary="network")
    assert refined.count == plain.count == 8
    assert dice(refined.labels > 0, truth > 0) >= dice(plain.labels > 0, truth > 0)
    with pytest.raises(Propagate2DError, match="unknown boundary"):
        propagate_large_image(image, guides, OraclePropMask(), boundary="sharp")
