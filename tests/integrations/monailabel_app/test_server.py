"""The MONAI Label app (integrations/monailabel) through a real server on 127.0.0.1, plus its click sessions.

The server tests need MONAI Label, which lives in its own environment: run them with
``bash scripts/test_monailabel.sh`` (it builds ``.venv-monailabel`` and runs this folder there). In the main
environment they are skipped; the session tests at the top (the library's predictor with oracle networks) run in
both. Requests are replayed as 3D Slicer's MONAI Label module builds them (:func:`slicer_infer`, :func:`slicer_roi`);
the request reading itself is tested in tests/prompts/test_request.py.

Unless trained default weights sit in ``bundle/models/model.pt``, the server runs with stand-in weights whose every
head says "object" (deterministic, non-empty output): those tests check the plumbing — the result's grid, affine,
prompt slice, volume and timing — and the prompt slice itself, which the app computes (box -> Box2Mask box, clicks
-> region growing, painted label). ``test_dice_with_default_weights`` checks 3D Dice >= 0.7 against the known
object with the default weights and is skipped while there are none.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import OracleBox2Mask, OraclePropMask, always_object, ellipsoid, object_volume

from pam_monai.errors import PromptError

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "integrations" / "monailabel"
BUNDLE = ROOT / "bundle"
BUNDLE_MODEL = BUNDLE / "models" / "model.pt"
_SPEC = importlib.util.find_spec("monailabel")
# tests/ is on sys.path under pytest, so this very folder is a namespace package "monailabel": require the real one.
HAS_MONAILABEL = _SPEC is not None and _SPEC.origin is not None
requires_monailabel = pytest.mark.skipif(
    not HAS_MONAILABEL,
    reason="MONAI Label is not installed here; it has its own environment: run bash scripts/test_monailabel.sh",
)

# A sheared affine (as a tilted gantry gives): the result must keep it exactly.
AFFINE0 = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])
AFFINE1 = np.diag([1.0, 1.2, 2.0, 1.0])
# i flipped: 3D Slicer's roi pair comes out reversed along it.
AFFINE2 = np.array([[-1.0, 0, 0, 20.0], [0, 1.1, 0, 15.0], [0, 0, 1.5, -8.0], [0, 0, 0, 1.0]])
CASES = {
    "vol0": ((48, 44, 30), (24, 22, 15), (10, 9, 6), AFFINE0),
    "vol1": ((40, 48, 28), (19, 25, 13), (8, 11, 6), AFFINE1),
    "vol2": ((44, 40, 24), (32, 9, 12), (6, 5, 5), AFFINE2),  # off the diagonal: i and j ranges do not overlap
}
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 240
TRAIN_TIMEOUT_S = 240


def _sessions_module() -> Any:
    spec = importlib.util.spec_from_file_location("pam_monailabel_sessions", APP / "lib" / "sessions.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def slicer_roi(first: tuple[float, ...], last: tuple[float, ...], affine: np.ndarray) -> list[int]:
    """``roi`` as 3D Slicer's MONAI Label module sends it for an ROI covering voxels ``first..last``.

    Its ROI tool takes the ROI's centre and size in RAS, maps (centre - size/2) and (centre + size/2) to IJK with
    the volume's RAS->IJK matrix, rounds them and sends them interleaved: ``[i0, i1, j0, j1, k0, k1]`` (a pair is
    reversed along an axis the matrix flips).
    """
    corners = np.c_[np.array([first, last], dtype=float), np.ones(2)] @ np.asarray(affine, dtype=float).T
    centre, size = corners[:, :3].mean(axis=0), np.abs(corners[1, :3] - corners[0, :3])
    ras_to_ijk = np.linalg.inv(affine)
    low = [round(v) for v in (ras_to_ijk @ np.r_[centre - size / 2, 1.0])[:3]]
    high = [round(v) for v in (ras_to_ijk @ np.r_[centre + size / 2, 1.0])[:3]]
    return [v for pair in zip(low, high) for v in pair]


# ---------------------------------------------------------------------------------------------------------------
# Click sessions (no server; runs in every environment)
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------------

AUDIT_HOOK = textwrap.dedent(
    '''
    """Records every attempt to reach a non-loopback address (installed by this test module)."""
    import os
    import sys

    _LOG = os.environ.get("PAM_NET_AUDIT_LOG")


    def _local(host):
        if host is None:
            return True
        host = host.decode() if isinstance(host, bytes) else str(host)
        host = host.strip("[]").lower()
        return host in ("", "localhost", "0.0.0.0", "::", "::1", "ip6-localhost") or host.startswith(
            ("127.", "::ffff:127.")
        )


    def _write(line):
        with open(_LOG, "a") as fp:
            fp.write(f"{os.getpid()} {line}\\n")


    def _hook(event, args):
        try:
            if event == "socket.connect" and isinstance(args[1], tuple) and not _local(args[1][0]):
                _write(f"connect {args[1]!r}")
            elif event == "socket.getaddrinfo" and not _local(args[0]):
                _write(f"getaddrinfo {args[0]!r}")
        except Exception:
            pass


    if _LOG:
        with open(_LOG + ".active", "a") as fp:
            fp.write(f"{os.getpid()} {' '.join(getattr(sys, 'orig_argv', sys.argv)[1:5])}\\n")
        sys.addaudithook(_hook)
    '''
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``monailabel start_server`` subprocess on 127.0.0.1 and the files it was started with."""

    def __init__(self, root: Path, studies: Path, model_dir: Path, extra_conf: tuple[str, ...] = ()) -> None:
        self.root, self.studies, self.model_dir = root, studies, model_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.audit = root / "net_audit.log"
        hook_dir = root / "hook"
        hook_dir.mkdir()
        (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PAM_NET_AUDIT_LOG": str(self.audit),
            "MONAI_LABEL_SESSION_PATH": str(root / "sessions"),
            "MONAI_LABEL_DATASTORE_CACHE_PATH": str(root / "cache"),
        }
        command = [
            sys.executable, "-m", "monailabel.main", "start_server",
            "--app", str(APP), "--studies", str(studies),
            "--conf", "models", "pam", "--conf", "pam_model_dir", str(model_dir),
            "--host", "127.0.0.1", "--port", str(self.port), *extra_conf,
        ]  # fmt: skip
        self._log_file = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        # Its own process group: stop() ends the server and any training process it started, by this PID.
        self.process = subprocess.Popen(
            command, cwd=str(root), env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the server did not answer /info/ within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self._log_file.close()


def _write_studies(folder: Path) -> dict[str, dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for seed, (name, (shape, centre, radii, affine)) in enumerate(CASES.items()):
        truth = ellipsoid(shape, centre, radii)
        image = object_volume(truth, seed=seed)
        # Real objects have texture; a perfectly flat one is outside what the default Box2Mask has seen.
        image[truth] += np.random.default_rng(100 + seed).normal(0, 4, int(truth.sum())).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), folder / f"{name}.nii.gz")
        cases[name] = {"image": image, "truth": truth, "affine": affine, "centre": centre, "radii": radii}
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    return {"root": root, "studies": studies, "cases": _write_studies(studies)}


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


def _infer(
    server: Server,
    image: str,
    params: Any,
    label: Path | None = None,
    model: str = "pam",
    raw_params: str | None = None,
) -> Any:
    import requests

    files: dict[str, Any] = {"params": (None, raw_params if raw_params is not None else json.dumps(params))}
    if label is not None:
        files["label"] = (label.name, label.read_bytes(), "application/octet-stream")
    return requests.post(f"{server.url}/infer/{model}", params={"image": image}, files=files, timeout=REQUEST_TIMEOUT_S)


def slicer_infer(
    server: Server,
    image: str,
    params: dict[str, Any],
    label: Path | None = None,
    client_id: str = "user-xyz",
    session_id: str | None = None,
    model: str = "pam",
) -> Any:
    """POST /infer/<model> as 3D Slicer's MONAI Label client does.

    The query carries ``image`` (and ``session_id`` when the sample has a session); the multipart form carries
    ``params`` (JSON with the tool's fields, plus ``client_id`` (the module's default is ``user-xyz``),
    ``result_extension`` ``.nrrd`` and ``result_dtype`` ``uint8``) and the ``label`` file when the tool uploads one.
    """
    import requests

    params = {**params, "result_extension": ".nrrd", "result_dtype": "uint8", "client_id": client_id}
    query = {"image": image, **({"session_id": session_id} if session_id else {})}
    files: dict[str, Any] = {"params": (None, json.dumps(params))}
    if label is not None:
        files["label"] = (label.name, label.read_bytes(), "application/octet-stream")
    return requests.post(f"{server.url}/infer/{model}", params=query, files=files, timeout=REQUEST_TIMEOUT_S)


def _parts(response: Any) -> dict[str, bytes]:
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    assert response.status_code == 200, response.text[:500]
    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = part.content
    return parts


def _result(response: Any, tmp_path: Path) -> tuple[dict[str, Any], nib.Nifti1Image]:
    """The JSON and the label image of a multipart infer response."""
    parts = _parts(response)
    params = json.loads(parts["params"])
    path = tmp_path / f"result_{time.monotonic_ns()}.nii.gz"
    path.write_bytes(parts["image"])
    image = nib.load(str(path))
    return params, nib.Nifti1Image(np.asanyarray(image.dataobj).copy(), image.affine)


def _slicer_result(response: Any, tmp_path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON and the ``(i, j, k)`` label array of the ``.nrrd`` result 3D Slicer asks for."""
    from monai.transforms import LoadImage

    parts = _parts(response)
    path = tmp_path / f"result_{time.monotonic_ns()}.nrrd"
    path.write_bytes(parts["image"])
    labels = np.asarray(LoadImage(image_only=True)(str(path)))
    return json.loads(parts["params"]), labels


def _check_plumbing(params: dict[str, Any], result: nib.Nifti1Image, case: dict[str, Any]) -> np.ndarray:
    """The result is a label image on the image's grid with the reported volume; returns its array."""
    labels = np.asarray(result.dataobj)
    assert labels.shape == case["image"].shape
    np.testing.assert_allclose(result.affine, case["affine"], atol=1e-4)
    assert labels.any(), "empty result"
    assert set(np.unique(labels).tolist()) <= {0, 1}
    (obj,) = params["objects"]
    assert obj["name"] == "object" and params["label_name"] == "object"
    voxel_ml = abs(np.linalg.det(case["affine"][:3, :3])) / 1000.0
    assert obj["voxels"] == int((labels > 0).sum())
    assert obj["volume_ml"] == pytest.approx(obj["voxels"] * voxel_ml, rel=1e-3)
    assert params["timing"]["total"] > 0 and params["latencies"]["total"] > 0
    return labels


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
    params, result = _result(_infer(server, "vol0", {"roi": roi}), tmp_path)  # no axis: the flat one is used
    labels = _check_plumbing(params, result, case)
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
    params, labels = _slicer_result(slicer_infer(server, "vol2", request, label=segments, model="pam_roi"), tmp_path)
    assert labels.shape == truth.shape
    assert params["prompt"]["type"] == "box" and params["prompt"]["box"] == [26, 4, 38, 14]
    on_slice = labels[:, :, 12] > 0
    assert on_slice[truth[:, :, 12]].all()  # the whole object is in the prompt
    assert _dice(on_slice, truth[:, :, 12]) > 0.75  # the stand-in Box2Mask fills the box: box vs ellipse
    old = np.zeros(truth.shape[:2], bool)
    x0, y0, x1, y1 = roi[:4]
    old[min(x0, x1) : max(x0, x1) + 1, min(y0, y1) : max(y0, y1) + 1] = True
    assert _dice(old, truth[:, :, 12]) < 0.1


@requires_monailabel
def test_box3d_roi_is_clipped_to_the_box(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol1"]
    roi = slicer_roi((11, 14, 9), (27, 36, 17), case["affine"])
    params, result = _result(_infer(server, "vol1", {"roi": roi}), tmp_path)
    labels = _check_plumbing(params, result, case)
    assert params["prompt"]["type"] == "box3d"
    inside = np.zeros(labels.shape, bool)
    inside[11:28, 14:37, 9:18] = True
    assert labels[~inside].sum() == 0 and labels[inside].any()


@requires_monailabel
@pytest.mark.parametrize("axis", [2, 1])
def test_one_foreground_click(server: Server, cases: dict[str, Any], tmp_path: Path, axis: int) -> None:
    case = cases["cases"]["vol0"]
    click = [24, 22, 15]
    params, result = _result(_infer(server, "vol0", {"foreground": [click], "axis": axis}), tmp_path)
    labels = _check_plumbing(params, result, case)
    assert params["prompt"]["type"] == "clicks" and params["objects"][0]["prompt_slices"] == [click[axis]]
    # The prompt slice is the region growing of pam_monai.prompts.clicks: it must find the object there.
    plane = np.take(labels, click[axis], axis=axis) > 0
    assert _dice(plane, np.take(case["truth"], click[axis], axis=axis)) > 0.9


@requires_monailabel
def test_background_click_cuts_the_prompt(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    case = cases["cases"]["vol0"]
    request = {"foreground": [[24, 18, 15]], "background": [[24, 28, 15]]}
    params, result = _result(_infer(server, "vol0", request), tmp_path)
    labels = _check_plumbing(params, result, case)
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
    params, result = _result(_infer(server, "vol1", {}, label=path), tmp_path)
    labels = _check_plumbing(params, result, case)
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
    params, labels = _slicer_result(slicer_infer(server, "vol1", request, label=path, model="pam_roi"), tmp_path)
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
    params, labels = _slicer_result(
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
        params, labels = _slicer_result(slicer_infer(server, "vol0", request, client_id="alice"), tmp_path)
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
            params, labels = _slicer_result(slicer_infer(server, "vol0", request, client_id=client), tmp_path)
            sessions.append(params["session"])
        return sessions, labels

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(users)) as pool:
        outcomes = list(pool.map(run, users))
    for n, ((client, shift), (sessions, labels)) in enumerate(zip(users, outcomes)):
        if client not in ("user-xyz",):
            assert [s["computed_steps"] for s in sessions] == [1, 1, 1], client
        final = _click_sequence(case["centre"], shift)[-1]
        _, alone = _slicer_result(slicer_infer(server, "vol0", final, client_id=f"check-{n}"), tmp_path)
        assert np.array_equal(labels, alone), f"{client} {shift}: another user's clicks entered the result"


@requires_monailabel
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    server: Server, cases: dict[str, Any], tmp_path: Path
) -> None:
    import requests

    wrong_grid = tmp_path / "wrong_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), wrong_grid)
    bad = [
        (_infer(server, "vol0", {}), 400, "no prompt"),
        (_infer(server, "vol0", {"roi": [60, 94, 13, 31, 15, 15]}), 400, "outside the image"),
        (_infer(server, "vol0", {"foreground": [[24, 22, 15]], "axis": 7}), 400, "axis must be 0, 1 or 2"),
        (_infer(server, "vol0", {}, model="no_such_model"), 404, "unknown model"),
        (_infer(server, "vol0", None, raw_params='{"roi": [1, 2,'), 400, "not valid JSON"),
        (_infer(server, "no_such_image", {"foreground": [[1, 1, 1]]}), 404, "unknown image"),
        (_infer(server, "vol0", {}, label=wrong_grid), 400, "differs from the image"),
    ]
    for response, status, message in bad:
        assert response.status_code == status, (status, response.status_code, response.text[:300])
        assert message in response.json()["detail"], response.text[:300]
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    params, result = _result(_infer(server, "vol0", {"foreground": [[24, 22, 15]]}), tmp_path)
    _check_plumbing(params, result, cases["cases"]["vol0"])


@requires_monailabel
def test_eight_concurrent_requests_all_succeed(server: Server, cases: dict[str, Any], tmp_path: Path) -> None:
    jobs = []
    for i in range(8):
        name = "vol0" if i % 2 == 0 else "vol1"
        centre = [int(round(c)) for c in cases["cases"][name]["centre"]]
        jobs.append((name, {"foreground": [centre], "axis": (2, 1, 0)[i % 3]}))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_infer, server, name, params) for name, params in jobs]
        responses = [f.result(timeout=REQUEST_TIMEOUT_S + 30) for f in futures]
    for (name, _), response in zip(jobs, responses):
        params, result = _result(response, tmp_path)
        _check_plumbing(params, result, cases["cases"][name])


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
    params, result = _result(_infer(server, "vol0", {"foreground": [[24, 22, 15]]}), tmp_path)
    _check_plumbing(params, result, cases["cases"]["vol0"])
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
            params, result = _result(_infer(srv, "vol0", params_in, label=label_path), tmp_path)
            labels = _check_plumbing(params, result, case)
            assert _dice(labels > 0, truth) >= 0.7, (params_in, _dice(labels > 0, truth))
    finally:
        srv.stop()
