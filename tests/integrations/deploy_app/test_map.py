"""The MONAI Application Package (MAP) built and run for real with Docker, with the README's own commands.

The README's MONAI Deploy section holds the build and run commands between two markers; this test runs them as
written: the build (``bash scripts/build_map.sh ...``) from the repository root, the run (``docker run ...``) in a
folder that holds ``input/`` (a generated CT series and ``prompt.json``) and receives ``output/``. The MAP runs the
bundle's shipped weights (``bundle/models``); its labels must equal the in-process app's on the same input, its DICOM
SEG must reference the source series (checked with highdicom); a bad prompt and an empty input folder must end the
container with one ``pam-deploy: error:`` line and exit code 2.

It needs a Docker engine, or root on a Debian machine where ``build_map.sh`` can install and start one (CI); elsewhere
it is skipped with the reason. ``PAM_MAP_TEST=0`` skips it. A first build downloads about 1 GB and takes minutes; a
rebuild with Docker's layer cache takes seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from deploy_case import DI, DJ, DK, HAS_DEPLOY, ROOT, SHAPE, run_app, seg_frames, write_ct_series

README = ROOT / "README.md"
BEGIN, END = "<!-- map-commands: begin -->", "<!-- map-commands: end -->"
BUILD_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 600


def _docker_skip_reason() -> str | None:
    if os.environ.get("PAM_MAP_TEST") == "0":
        return "PAM_MAP_TEST=0"
    if shutil.which("docker"):
        if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0:
            return None
    if hasattr(os, "geteuid") and os.geteuid() == 0 and (shutil.which("dockerd") or shutil.which("apt-get")):
        return None  # scripts/build_map.sh installs (Debian's docker.io) and starts the engine
    return "no Docker engine answers here and this user cannot install or start one (scripts/build_map.sh needs root)"


SKIP_REASON = None if not HAS_DEPLOY else _docker_skip_reason()
pytestmark = [
    pytest.mark.skipif(not HAS_DEPLOY, reason="no MONAI Deploy / highdicom here: bash scripts/test_deploy.sh"),
    pytest.mark.skipif(SKIP_REASON is not None, reason=f"MAP not built: {SKIP_REASON}"),
]


def readme_commands() -> tuple[str, str]:
    """The README's ``(build command, run command)``, continuation lines joined, comments dropped."""
    text = README.read_text()
    assert BEGIN in text and END in text, f"README.md lost its {BEGIN} ... {END} block"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    code = re.search(r"```bash\n(.*?)```", block, re.S)
    assert code, "the MAP commands in README.md are not a ```bash block"
    commands = [
        c.strip() for c in code.group(1).replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")
    ]
    build = [c for c in commands if c.startswith("bash scripts/build_map.sh")]
    run = [c for c in commands if c.startswith("docker run")]
    assert len(build) == 1 and len(run) == 1, commands
    return build[0], run[0]


def _shell(command: str, cwd: Path, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    completed = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return completed, time.perf_counter() - start


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A generated CT series and a box around its largest object on that object's largest slice."""
    from pam_monai.data.synthetic import generate_volume

    root = tmp_path_factory.mktemp("map")
    synthetic = generate_volume(11, SHAPE, modality="CT", spacing=(DI, DJ, DK))
    volume = np.round(np.clip(synthetic.image, -1024, 3071)).astype(np.float32)
    label = np.asarray(synthetic.label)
    values, counts = np.unique(label[label > 0], return_counts=True)
    target = label == values[np.argmax(counts)]
    k = int(np.argmax(target.sum(axis=(0, 1))))
    i, j = np.nonzero(target[:, :, k])
    prompt = {"box": [int(i.min()), int(j.min()), int(i.max()), int(j.max())], "slice": k, "axis": 2}
    series = root / "series"
    uids = write_ct_series(series, volume)
    return {"root": root, "series": series, "uids": uids, "prompt": prompt}


def _work_folder(case: dict, name: str, prompt: str | None, series: bool = True) -> Path:
    work = case["root"] / name
    (work / "input").mkdir(parents=True)
    (work / "output").mkdir()
    if series:
        shutil.copytree(case["series"], work / "input", dirs_exist_ok=True)
    if prompt is not None:
        (work / "input" / "prompt.json").write_text(prompt)
    return work


@pytest.fixture(scope="module")
def built(case: dict) -> dict:
    build, run = readme_commands()
    completed, seconds = _shell(build, ROOT, BUILD_TIMEOUT_S)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    print(f"\nMAP build: {seconds:.0f} s; {completed.stdout.strip().splitlines()[-1]}")
    return {"run": run, "build_s": seconds}


@pytest.fixture(scope="module")
def map_run(case: dict, built: dict) -> dict:
    work = _work_folder(case, "good", json.dumps(case["prompt"]))
    completed, seconds = _shell(built["run"], work, RUN_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-4000:]
    print(f"MAP run: {seconds:.1f} s")
    return {"output": work / "output", "stdout": completed.stdout}


def test_map_layout_and_manifests(built: dict) -> None:
    tag = built["run"].split()[-1]
    inspected = json.loads(subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=True).stdout)
    config = inspected[0]["Config"]
    assert config["Entrypoint"] == ["/var/holoscan/tools"]
    environment = dict(item.split("=", 1) for item in config["Env"])
    assert environment["HOLOSCAN_MODEL_PATH"] == "/opt/holoscan/models"
    assert environment["HOLOSCAN_INPUT_PATH"].rstrip("/") == "/var/holoscan/input"
    shown = subprocess.run(["docker", "run", "--rm", tag, "show", "app"], capture_output=True, text=True, check=True)
    app_json = json.loads(shown.stdout)
    assert json.loads(app_json["command"]) == ["python3", "/opt/holoscan/app"]
    assert app_json["sdk"] == "monai-deploy" and app_json["workingDirectory"] == "/var/holoscan"
    shown = subprocess.run(["docker", "run", "--rm", tag, "show", "pkg"], capture_output=True, text=True, check=True)
    pkg_json = json.loads(shown.stdout)
    assert pkg_json["applicationRoot"] == "/opt/holoscan/app"
    assert pkg_json["models"] == {"models": "/opt/holoscan/models/models"}
    assert pkg_json["resources"]["gpu"] == 0
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "ls", tag, "/opt/holoscan/models/models", "/opt/holoscan/app"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "model.pt" in listing and "box2mask.pt" in listing and "__main__.py" in listing
    torch_check = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python3", tag, "-c", "import torch; print(torch.version.cuda)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert torch_check.stdout.strip() == "None"  # the CPU build


def test_map_writes_every_output_with_the_in_process_labels(map_run: dict, case: dict, tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom

    output = map_run["output"]
    names = sorted(p.name for p in output.iterdir())
    segs = [n for n in names if n.endswith(".dcm")]
    assert len(segs) == 1 and sorted(set(names) - set(segs)) == ["pam_report.json", "pam_seg.nii.gz", "pam_surface.stl"]
    labels = np.asarray(nib.load(output / "pam_seg.nii.gz").dataobj)
    assert labels.shape == SHAPE and labels.any()

    series = tmp_path / "input"
    shutil.copytree(case["series"], series)
    (series / "prompt.json").write_text(json.dumps(case["prompt"]))
    completed = run_app("-i", str(series), "-o", str(tmp_path / "output"), "-m", str(ROOT / "bundle" / "models"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    in_process = np.asarray(nib.load(tmp_path / "output" / "pam_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(labels, in_process)

    seg = hd.seg.segread(output / segs[0])
    source = pydicom.dcmread(next(case["series"].iterdir()), stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    frames = seg_frames(seg)
    slice_of_uid = {uid: k for k, uid in enumerate(case["uids"])}
    pixels = seg.pixel_array.reshape(len(frames), SHAPE[1], SHAPE[0])
    for index, (uid, _, number) in enumerate(frames):
        assert number == 1
        np.testing.assert_array_equal(pixels[index] > 0, labels[:, :, slice_of_uid[uid]].T > 0)
    assert sorted(slice_of_uid[uid] for uid, _, _ in frames) == [k for k in range(SHAPE[2]) if labels[:, :, k].any()]
    report = json.loads((output / "pam_report.json").read_text())
    assert report["objects"][0]["voxels"] == int((labels == 1).sum())
    assert report["prompt"]["box"] == case["prompt"]["box"]


@pytest.mark.parametrize(
    ("name", "prompt", "series", "expected"),
    [
        ("bad_prompt", '{"box": [1, 2, 3], "slice": 4}', True, "box needs 4 integers"),
        ("bad_json", "{not json", True, "not valid JSON"),
        ("empty_input", None, False, "the input folder is empty"),
    ],
)
def test_map_bad_input_ends_with_one_line(
    case: dict, built: dict, name: str, prompt: str | None, series: bool, expected: str
) -> None:
    work = _work_folder(case, name, prompt, series=series)
    completed, _ = _shell(built["run"], work, RUN_TIMEOUT_S)
    assert completed.returncode == 2, completed.stderr[-3000:]
    errors = [line for line in completed.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("pam-deploy: error:"), completed.stderr[-3000:]
    assert completed.stderr.rstrip().endswith(errors[0]) and expected in errors[0], errors[0]
    assert list((work / "output").iterdir()) == []
