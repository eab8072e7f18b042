"""A real MONAI Label server on 127.0.0.1 for the app's tests, and requests as 3D Slicer's module sends them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from conftest import ellipsoid, object_volume
from slicer_case import APP, CASES, REQUEST_TIMEOUT_S, START_TIMEOUT_S

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``monailabel start_server`` subprocess on 127.0.0.1 and the files it was started with."""

    def __init__(self, root: Path, studies: Path, model_dir: Path, extra_conf: tuple[str, ...] = ()) -> None:
        self.root, self.studies, self.model_dir = root, studies, model_dir
        self.port = free_port()
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


def write_studies(folder: Path) -> dict[str, dict[str, Any]]:
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


def infer(
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


def response_parts(response: Any) -> dict[str, bytes]:
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    assert response.status_code == 200, response.text[:500]
    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = part.content
    return parts


def read_result(response: Any, tmp_path: Path) -> tuple[dict[str, Any], nib.Nifti1Image]:
    """The JSON and the label image of a multipart infer response."""
    parts = response_parts(response)
    params = json.loads(parts["params"])
    path = tmp_path / f"result_{time.monotonic_ns()}.nii.gz"
    path.write_bytes(parts["image"])
    image = nib.load(str(path))
    return params, nib.Nifti1Image(np.asanyarray(image.dataobj).copy(), image.affine)


def read_slicer_result(response: Any, tmp_path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON and the ``(i, j, k)`` label array of the ``.nrrd`` result 3D Slicer asks for."""
    from monai.transforms import LoadImage

    parts = response_parts(response)
    path = tmp_path / f"result_{time.monotonic_ns()}.nrrd"
    path.write_bytes(parts["image"])
    labels = np.asarray(LoadImage(image_only=True)(str(path)))
    return json.loads(parts["params"]), labels


def check_plumbing(params: dict[str, Any], result: nib.Nifti1Image, case: dict[str, Any]) -> np.ndarray:
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
