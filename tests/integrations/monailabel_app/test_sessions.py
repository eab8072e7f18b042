"""The MONAI Label app's click sessions on the library's interactive predictor (no server; runs in every
environment): clicks re-sent by 3D Slicer on several slices are corrections of one session per client, image and
segment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import OracleBox2Mask, OraclePropMask, ellipsoid, object_volume
from slicer_case import dice as _dice
from slicer_case import sessions_module as _sessions_module

from pam_monai.errors import PromptError


def _predictor(image: np.ndarray) -> Any:
    """The library's interactive predictor with oracle networks (true masks of generated objects)."""
    from pam_monai.inferers import PropagationInferer
    from pam_monai.predictor import PAMPredictor

    predictor = PAMPredictor(
        propmask=OraclePropMask(), box2mask=OracleBox2Mask(), inferer=PropagationInferer(thickness_mm=6)
    )
    predictor.set_image(image)
    return predictor


def _request_module() -> Any:
    from pam_monai.prompts import request

    return request


def test_clicks_on_several_slices_are_corrections_and_resume_the_session() -> None:
    sessions_module, request = _sessions_module(), _request_module()
    truth = ellipsoid((40, 40, 24), (20, 20, 12), (9, 9, 8))
    image = object_volume(truth)
    fake = _predictor(image)
    sessions = sessions_module.ClickSessions()
    clicks: dict[str, Any] = {"label": "liver", "client_id": "alice", "foreground": [[20, 20, 12]], "background": []}
    first = sessions.run(request.read_request(clicks, truth.shape), "img", fake)
    assert first.info["steps"] == 1 and first.info["computed_steps"] == 1
    assert _dice(first.labels[:, :, 12], truth[:, :, 12]) > 0.9
    # Slicer re-sends every click: a background click on slice 20 is a second step, the first is reused.
    clicks["background"] = [[20, 20, 21]]
    second = sessions.run(request.read_request(clicks, truth.shape), "img", fake)
    assert second.info["reused_steps"] == 1 and second.info["computed_steps"] == 1
    assert second.info["cleared"] == [21] and not second.labels[:, :, 21:].any() and second.labels[:, :, 18].any()
    assert np.array_equal(second.labels[:, :, 12], first.labels[:, :, 12])
    # A positive click on slice 5 where the object is smaller: the mask there is corrected, the rest kept.
    clicks["foreground"].append([20, 20, 5])
    third = sessions.run(request.read_request(clicks, truth.shape), "img", fake)
    assert third.info["reused_steps"] == 2 and third.info["guides"] == [5, 12]
    # Another client starts from scratch (steps in first-click order) and here reaches the same labels.
    fresh = sessions_module.ClickSessions().run(
        request.read_request({**clicks, "client_id": "bob"}, truth.shape), "img", _predictor(image)
    )
    assert np.array_equal(fresh.labels, third.labels) and fresh.info["reused_steps"] == 0
    # Deleting a click (Slicer then sends the shorter list) goes back to the matching earlier state.
    clicks["foreground"].pop()
    again = sessions.run(request.read_request(clicks, truth.shape), "img", fake)
    assert np.array_equal(again.labels, second.labels) and again.info["computed_steps"] == 0


def test_sessions_are_isolated_per_client_image_and_segment() -> None:
    sessions_module, request = _sessions_module(), _request_module()
    truth = ellipsoid((40, 40, 24), (20, 20, 12), (9, 9, 8))
    image = object_volume(truth)
    sessions = sessions_module.ClickSessions(max_sessions=3)
    fake = _predictor(image)
    base = {"foreground": [[20, 20, 12]], "label": "liver", "client_id": "alice"}
    for key in ({}, {"client_id": "bob"}, {"label": "spleen"}, {"session_id": "s2"}):
        outcome = sessions.run(request.read_request({**base, **key}, truth.shape), "img", fake)
        assert outcome.info["reused_steps"] == 0, key
    assert len(sessions) == 3  # the least recently used one was dropped
    outcome = sessions.run(request.read_request(base, truth.shape), "other_image", fake)
    assert outcome.info["reused_steps"] == 0


def test_box_then_clicks_and_bad_corrections() -> None:
    sessions_module, request = _sessions_module(), _request_module()
    truth = ellipsoid((40, 40, 24), (20, 20, 12), (9, 9, 8))
    image = object_volume(truth)
    fake = _predictor(image)
    sessions = sessions_module.ClickSessions()
    roi = {"roi": [11, 29, 11, 29, 12, 12], "background": [[20, 20, 2]]}
    outcome = sessions.run(request.read_request(roi, truth.shape), "img", fake)
    assert _dice(outcome.labels[:, :, 12] > 0, truth[:, :, 12]) > 0.9
    assert outcome.info["cleared"] == [2] and not outcome.labels[:, :, :3].any()
    two = np.zeros(truth.shape, np.uint8)
    two[5:10, 5:10, 4] = 1
    two[20:25, 20:25, 4] = 2
    prompt = request.read_request({"foreground": [[21, 21, 4]]}, truth.shape, uploaded_label=two)
    with pytest.raises(PromptError, match="one object"):
        sessions.run(prompt, "img", fake)
