"""The MONAI Label app (integrations/monailabel) through a real server on 127.0.0.1.

The server tests need MONAI Label, which lives in its own environment: run them with
``bash scripts/test_monailabel.sh`` (it builds ``.venv-monailabel`` and runs this folder there). In the main
environment they are skipped; the click sessions without a server are in test_sessions.py. Requests are replayed
as 3D Slicer's MONAI Label module builds them (``slicer_infer``, ``slicer_roi``); the request reading itself is
tested in tests/prompts/test_request.py.

Unless trained default weights sit in ``bundle/models/model.pt``, the server runs with stand-in weights whose every
head says "object" (deterministic, non-empty output): those tests check the plumbing — the result's grid, affine,
prompt slice, volume and timing — and the prompt slice itself, which the app computes (box -> Box2Mask box, clicks
-> region growing, painted label). ``test_dice_with_default_weights`` checks 3D Dice >= 0.7 against the known
object with the default weights and is skipped while there are none.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object
from server_case import (
    Server,
    check_plumbing,
    infer,
    read_result,
    read_slicer_result,
    slicer_infer,
    write_studies,
)
from slicer_case import (
    BUNDLE,
    BUNDLE_MODEL,
    HAS_MONAILABEL,
    REQUEST_TIMEOUT_S,
    ROOT,
    TRAIN_TIMEOUT_S,
    dice,
    requires_monailabel,
    slicer_roi,
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    return {"root": root, "studies": studies, "cases": write_studies(studies)}


@pytest.fixture(scope="module")
def server(cases: dict[str, Any]) -> Iterator[Server]:
    if not HAS_MONAILABEL:
        pytest.skip("MONAI Label is not installed here; run bash scripts/test_monailabel.sh")
    root = cases["root"]
    model_dir = root / "models"
    model_dir.mkdir()
    from pam_monai.networks import build_box2mask, build_propmask, save_network

    torch.manual_seed(0)
    save_network(always_object(build_propmask("light", input_size=64)), model_dir / "model.pt")
    save_network(always_object(build_box2mask("light", input_size=64)), model_dir / "box2mask.pt")
    srv = Server(root, cases["studies"], model_dir)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@requires_monailabel
def test_info_describes_the_model_and_its_prompts(server: Server) -> None:
    import requests

    info = requests.get(f"{server.url}/info/", timeout=30).json()
    pam = info["models"]["pam"]
    assert pam["type"] == "deepgrow" and pam["dimension"] == 3 and pam["labels"] == {"object": 1}
    assert {"roi", "foreground", "background", "label", "axis"} <= set(pam["prompts"])
    assert pam["bundle"] == str(ROOT / "bundle")
    assert pam["weights"]["propmask"] == str(server.model_dir / "model.pt")
    assert "pam" in info["trainers"] and info["labels"] == ["object"]
    # The same model as a scribbles method: 3D Slicer's module offers its ROI tool there.
    assert info["models"]["pam_roi"]["type"] == "scribbles"


@requires_monailabel
def test_datastore_lists_the_studies(server: Server, cases: dict[str, Any]) -> None:
    import requests

    store = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert set(store["objects"]) == set(cases["cases"])


@requires_monailabel
@pytest.mark.parametrize(("axis", "first", "last"), [(2, (14, 13, 15), (34, 31, 15)), (0, (24, 12, 5), (24, 32, 25))])
def test_slicer_roi_box(
    server: Server, cases: dict[str, Any], tmp_path: Path, axis: int, first: tuple, last: tuple
) -> None:
    case = cases["cases"]["vol0"]
    roi = slicer_roi(first, last, case["affine"])
    assert axis == 0 or roi[0] > roi[1], "the i pair is reversed on this grid"
    params, result = read_result(infer(server, "vol0", {"roi": roi}), tmp_path)  # no axis: the flat one is used
    labels = check_plumbing(params, result, case)
    assert params["prompt"]["type"] == "box" and params["prompt"]["axis"] == axis
    assert params["objects"][0]["prompt_slices"] == [first[axis]]
    # The stand-in Box2Mask says "object" everywhere: the prompt slice is exactly the box.
    expected = np.zeros(case["image"].shape, bool)
    expected[first[0] : last[0] + 1, first[1] : last[1] + 1, first[2] : last[2] + 1] = True
    plane = first[axis]
    assert np.array_equal(np.take(labels, plane, axis=axis) > 0, np.take(expected, plane, axis=axis))
    others = tuple(a for a in range(3) if a != axis)
    assert np.count_nonzero(labels.any(axis=others)) > 1, "nothing was propagated"


@requires_monailabel
def test_slicer_roi_from_the_scribbles_tool_lands_on_the_object(
    server: Server, cases: dict[str, Any], tmp_path: Path
) -> None:
    """Acceptance: an ROI drawn around the object in 3D Slicer lands on it; the old [x0, y0, x1, y1, ...] reading
    of the same numbers misses it."""
    case = cases["cases"]["vol2"]
    truth = case["truth"]
    roi = slicer_roi((26, 4, 12), (38, 14, 12), case["affine"])  # the object's bounding box on slice 12
    assert roi[0] > roi[1] and roi[2] < roi[3], "the i pair is reversed on this grid"
    # The scribbles tool uploads the visible segments (here the still empty one) with the roi.
    segments = tmp_path / "scribbles.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(truth.shape, np.uint8), case["affine"]), segments)
    request = {"roi": roi, "label_info": [{"name": "object", "id": 1}], "selected_label_name": "object"}
    params, labels = read_slicer_result(
        slicer_infer(server, "vol2", request, label=segments, model="pam_roi"), tmp_path
    )
    assert labels.shape == truth.shape
    assert params["prompt"]["type"] == "box" and params["prompt"]["box"] == [26, 4, 38, 14]
    on_slice = labels[:, :, 12] > 0
    assert on_slice[truth[:, :, 12]].all()  # the whole object is in the prompt
    assert dice(on_slice, truth[:, :, 12]) > 0.75  # the stand-in Box2Mask fills the box: box vs ellipse
    old = np.zeros(truth.shape[:2], bool)
    x0, y0, x1, y1 = roi[:4]
    old[min(x0, x1) : max(x0, x1) + 1, min(y0, y1) : max(y0, y1) + 1] = True
    assert dice(old, truth[:, :, 12]) < 0.1


@requires_monailabel
def test_box3d_roi_is_clipped_to_the_box(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol1"]
    roi = slicer_roi((11, 14, 9), (27, 36, 17), case["affine"])
    params, result = read_result(infer(server, "vol1", {"roi": roi}), tmp_path)
    labels = check_plumbing(params, result, case)
    assert params["prompt"]["type"] == "box3d"
    inside = np.zeros(labels.shape, bool)
    inside[11:28, 14:37, 9:18] = True
    assert labels[~inside].sum() == 0 and labels[inside].any()


@requires_monailabel
@pytest.mark.parametrize("axis", [2, 1])
def test_one_foreground_click(server: Server, cases: dict[str, Any], tmp_path: Path, axis: int) -> None:
    case = cases["cases"]["vol0"]
    click = [24, 22, 15]
    params, result = read_result(infer(server, "vol0", {"foreground": [click], "axis": axis}), tmp_path)
    labels = check_plumbing(params, result, case)
    assert params["prompt"]["type"] == "clicks" and params["objects"][0]["prompt_slices"] == [click[axis]]
    # The prompt slice is the region growing of pam_monai.prompts.clicks: it must find the object there.
    plane = np.take(labels, click[axis], axis=axis) > 0
    assert dice(plane, np.take(case["truth"], click[axis], axis=axis)) > 0.9


@requires_monailabel
def test_background_click_cuts_the_prompt(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol0"]
    request = {"foreground": [[24, 18, 15]], "background": [[24, 28, 15]]}
    params, result = read_result(infer(server, "vol0", request), tmp_path)
    labels = check_plumbing(params, result, case)
    assert params["prompt"]["background"] == 1
    plane = labels[:, :, 15] > 0
    assert plane.any() and not plane[:, 24:].any()


@requires_monailabel
def test_uploaded_mask_prompt(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol1"]
    prompt = np.zeros(case["truth"].shape, np.uint8)
    prompt[:, :, 13] = case["truth"][:, :, 13]
    path = tmp_path / "prompt.nii.gz"
    nib.save(nib.Nifti1Image(prompt, case["affine"]), path)
    params, result = read_result(infer(server, "vol1", {}, label=path), tmp_path)
    labels = check_plumbing(params, result, case)
    assert params["prompt"] == {"axis": 2, "type": "label", "slices": [13]}
    assert np.array_equal(labels[:, :, 13] > 0, prompt[:, :, 13] > 0)


@requires_monailabel
def test_painted_segment_on_several_slices_is_a_multi_slice_prompt(
    server: Server, cases: dict[str, Any], tmp_path: Path
) -> None:
    case = cases["cases"]["vol1"]
    truth = case["truth"]
    segments = np.zeros(truth.shape, np.uint8)
    segments[2:6, 2:6, 3] = 1  # another segment, not selected
    for k in (9, 13, 17):
        segments[:, :, k] = truth[:, :, k] * 2
    path = tmp_path / "segments.nii.gz"
    nib.save(nib.Nifti1Image(segments, case["affine"]), path)
    request = {
        "roi": [],
        "label_info": [{"name": "other", "id": 1}, {"name": "object", "id": 2}],
        "selected_label_name": "object",
    }
    params, labels = read_slicer_result(slicer_infer(server, "vol1", request, label=path, model="pam_roi"), tmp_path)
    assert params["prompt"] == {"axis": 2, "type": "label", "slices": [9, 13, 17]}
    for k in (9, 13, 17):  # every painted slice is a guide and keeps its mask
        assert np.array_equal(labels[:, :, k] > 0, truth[:, :, k])
    assert not labels[2:6, 2:6, 3].any()


@requires_monailabel
def test_label_parameter_is_never_opened_on_the_server(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol0"]
    existing = tmp_path / "on_the_server.nii.gz"  # a perfectly valid mask prompt on the server's disk
    prompt = np.zeros(case["truth"].shape, np.uint8)
    prompt[:, :, 15] = case["truth"][:, :, 15]
    nib.save(nib.Nifti1Image(prompt, case["affine"]), existing)
    for params in ({"label": str(existing)}, {"pam_uploaded_label": str(existing)}):
        response = slicer_infer(server, "vol0", params)
        assert response.status_code == 400 and "no prompt" in response.json()["detail"], response.text[:300]
    # With a click, "label" is the segment's name, as the deepgrow tool sends it.
    params, labels = read_slicer_result(
        slicer_infer(server, "vol0", {"label": str(existing), "foreground": [[24, 22, 15]]}), tmp_path
    )
    assert params["prompt"]["type"] == "clicks"


def _click_sequence(centre: tuple[int, ...], shift: int) -> list[dict[str, Any]]:
    """What Slicer sends as a user adds clicks: every request carries all clicks placed so far."""
    i, j, k = (int(round(c)) for c in centre)
    first = [[i, j + shift, k]]
    second = first + [[i, j, k - 3]]
    return [
        {"label": "object", "foreground": first, "background": []},
        {"label": "object", "foreground": second, "background": []},
        {"label": "object", "foreground": second, "background": [[i + shift, j, k + 5]]},
    ]


@requires_monailabel
def test_slicer_clicks_on_several_slices_correct_one_session(
    server: Server, cases: dict[str, Any], tmp_path: Path
) -> None:
    case = cases["cases"]["vol0"]
    steps = []
    for request in _click_sequence(case["centre"], 0):
        params, labels = read_slicer_result(slicer_infer(server, "vol0", request, client_id="alice"), tmp_path)
        steps.append((params["session"], labels))
    assert [s["steps"] for s, _ in steps] == [1, 2, 3]
    assert [s["computed_steps"] for s, _ in steps] == [1, 1, 1], "each update computes only the new slice"
    assert steps[1][0]["guides"] == [12, 15]
    assert steps[2][0]["cleared"] == [20] and not steps[2][1][:, :, 20:].any()
    assert np.array_equal(steps[2][1][:, :, 15], steps[0][1][:, :, 15]), "the first guide keeps its mask"


@requires_monailabel
def test_concurrent_slicer_users_never_mix(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    """Three users click on the same image and segment at once (two with the module's default client id)."""
    case = cases["cases"]["vol0"]
    users = [("user-xyz", -2), ("user-xyz", 2), ("carol", 1)]

    def run(user: tuple[str, int]) -> tuple[list[dict[str, Any]], np.ndarray]:
        client, shift = user
        sessions = []
        for request in _click_sequence(case["centre"], shift):
            params, labels = read_slicer_result(slicer_infer(server, "vol0", request, client_id=client), tmp_path)
            sessions.append(params["session"])
        return sessions, labels

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(users)) as pool:
        outcomes = list(pool.map(run, users))
    for n, ((client, shift), (sessions, labels)) in enumerate(zip(users, outcomes)):
        if client not in ("user-xyz",):
            assert [s["computed_steps"] for s in sessions] == [1, 1, 1], client
        final = _click_sequence(case["centre"], shift)[-1]
        _, alone = read_slicer_result(slicer_infer(server, "vol0", final, client_id=f"check-{n}"), tmp_path)
        assert np.array_equal(labels, alone), f"{client} {shift}: another user's clicks entered the result"


@requires_monailabel
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    server: Server, cases: dict[str, Any], tmp_path: Path
) -> None:
    import requests

    wrong_grid = tmp_path / "wrong_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), wrong_grid)
    bad = [
        (infer(server, "vol0", {}), 400, "no prompt"),
        (infer(server, "vol0", {"roi": [60, 94, 13, 31, 15, 15]}), 400, "outside the image"),
        (infer(server, "vol0", {"foreground": [[24, 22, 15]], "axis": 7}), 400, "axis must be 0, 1 or 2"),
        (infer(server, "vol0", {}, model="no_such_model"), 404, "unknown model"),
        (infer(server, "vol0", None, raw_params='{"roi": [1, 2,'), 400, "not valid JSON"),
        (infer(server, "no_such_image", {"foreground": [[1, 1, 1]]}), 404, "unknown image"),
        (infer(server, "vol0", {}, label=wrong_grid), 400, "differs from the image"),
    ]
    for response, status, message in bad:
        assert response.status_code == status, (status, response.status_code, response.text[:300])
        assert message in response.json()["detail"], response.text[:300]
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    params, result = read_result(infer(server, "vol0", {"foreground": [[24, 22, 15]]}), tmp_path)
    check_plumbing(params, result, cases["cases"]["vol0"])


@requires_monailabel
def test_eight_concurrent_requests_all_succeed(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    jobs = []
    for i in range(8):
        name = "vol0" if i % 2 == 0 else "vol1"
        centre = [int(round(c)) for c in cases["cases"][name]["centre"]]
        jobs.append((name, {"foreground": [centre], "axis": (2, 1, 0)[i % 3]}))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(infer, server, name, params) for name, params in jobs]
        responses = [f.result(timeout=REQUEST_TIMEOUT_S + 30) for f in futures]
    for (name, _), response in zip(jobs, responses):
        params, result = read_result(response, tmp_path)
        check_plumbing(params, result, cases["cases"][name])


@requires_monailabel
def test_training_from_saved_labels_updates_the_weights(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    import requests

    for name in ("vol0", "vol1"):
        case = cases["cases"][name]
        path = tmp_path / f"{name}_label.nii.gz"
        nib.save(nib.Nifti1Image(case["truth"].astype(np.uint8), case["affine"]), path)
        saved = requests.put(
            f"{server.url}/datastore/label",
            params={"image": name, "tag": "final"},
            files={"label": (path.name, path.read_bytes())},
            timeout=60,
        )
        assert saved.status_code == 200, saved.text
    weights = server.model_dir / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()

    tiny = {
        "max_epochs": 1,
        "epoch_length": 2,
        "batch_size": 2,
        "tasks_per_volume": 2,
        "input_size": 64,
        "val_split": 0,
    }
    started = requests.post(f"{server.url}/train/pam", json=tiny, timeout=60)
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{server.url}/train/", timeout=30).json()
        if status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(1)
    details = "\n".join(status.get("details", []))
    assert status.get("status") == "DONE", f"training ended as {status.get('status')}:\n{details}"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != before, "the weights file did not change"
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    stats = info["train_stats"]["pam"]
    assert stats["train_volumes"] == 2 and stats["weights"] == str(weights)

    # The next inference loads the new weights (and still works).
    params, result = read_result(infer(server, "vol0", {"foreground": [[24, 22, 15]]}), tmp_path)
    check_plumbing(params, result, cases["cases"]["vol0"])
    assert server.log.read_text().count(f"PAM: loaded propmask weights from {weights}") >= 2, "not reloaded"


@requires_monailabel
def test_no_network_call_was_made(server: Server) -> None:
    """Runs last: the server (and the training process it started) never tried to reach a non-local address."""
    active = Path(str(server.audit) + ".active")
    assert active.exists(), "the network audit hook did not load"
    processes = active.read_text().splitlines()
    assert any("monailabel.main" in line for line in processes)
    assert any("monailabel.interfaces.utils.app" in line for line in processes), "the training process was not audited"
    attempts = server.audit.read_text() if server.audit.exists() else ""
    assert attempts == "", f"network access attempted:\n{attempts}"


@requires_monailabel
@pytest.mark.skipif(not BUNDLE_MODEL.exists(), reason="no trained default weights in bundle/models/model.pt yet")
def test_dice_with_default_weights(cases: dict[str, Any], tmp_path: Path) -> None:
    """With the bundle's trained weights, each prompt type finds the ellipsoid: 3D Dice >= 0.7."""
    root = tmp_path / "default"
    root.mkdir()
    empty_model_dir = root / "models"  # no weights here: the bundle's are used
    empty_model_dir.mkdir()
    srv = Server(root, cases["studies"], empty_model_dir, ("--conf", "bundle_path", str(BUNDLE)))
    try:
        srv.wait_ready()
        case = cases["cases"]["vol0"]
        truth = case["truth"]
        label = np.zeros(truth.shape, np.uint8)
        label[:, :, 15] = truth[:, :, 15]
        nib.save(nib.Nifti1Image(label, case["affine"]), root / "prompt.nii.gz")
        requests_ = [
            ({"foreground": [[24, 22, 15]]}, None),
            ({}, root / "prompt.nii.gz"),
        ]
        if (BUNDLE / "models" / "box2mask.pt").exists():
            requests_.append(({"roi": slicer_roi((13, 12, 15), (35, 32, 15), case["affine"])}, None))
        for params_in, label_path in requests_:
            params, result = read_result(infer(srv, "vol0", params_in, label=label_path), tmp_path)
            labels = check_plumbing(params, result, case)
            assert dice(labels > 0, truth) >= 0.7, (params_in, dice(labels > 0, truth))
    finally:
        srv.stop()
