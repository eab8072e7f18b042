"""The candidate comparison's held-out cross-image set: one-round propagation between generated scenes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pam_monai.evaluation.candidate import compare_cross_image, cross_image_pairs, summarise

MODELS = Path(__file__).resolve().parents[2] / "bundle" / "models"


def test_pairs_are_held_out_and_repeatable() -> None:
    one, two = cross_image_pairs(2, size=64), cross_image_pairs(2, size=64)
    assert len(one) == 2 and all(np.array_equal(a.query_images, b.query_images) for a, b in zip(one, two))
    assert not np.array_equal(one[0].guide_image, one[1].guide_image)


@pytest.mark.skipif(not (MODELS / "model.pt").is_file(), reason="the shipped weights")
def test_rows_per_weights_and_pair() -> None:
    pairs = cross_image_pairs(2)
    itself = dataclasses.replace(
        pairs[0], query_images=pairs[0].guide_image[None], query_masks=pairs[0].guide_mask[None]
    )
    rows = compare_cross_image({"shipped": MODELS, "candidate": MODELS}, [*pairs, itself])
    assert len(rows) == 6 and {r["set"] for r in rows} == {"cross-image"} and {r["variant"] for r in rows} == {"mask"}
    for row in rows:
        assert 0.0 <= row["dsc"] <= 1.0 and 0.0 <= row["sensitivity"] <= 1.0 and row["axis"] == -1
    by_weights = {w: [r["dsc"] for r in rows if r["weights"] == w] for w in ("shipped", "candidate")}
    assert by_weights["shipped"] == by_weights["candidate"]  # the same weights, the same masks
    assert by_weights["shipped"][2] > 0.5  # the guide scene as its own query
    summary = summarise(rows, ("set", "variant", "weights"))
    assert [r["objects"] for r in summary] == [3, 3]
