"""Every ``monai.bundle``, ``pam-monai`` and ``python -m pam_monai`` command shown in README.md and the bundle's
documents (``bundle/docs/*.md``), run verbatim.

The commands are read from the documents' fenced ``bash`` blocks (continuation lines joined), so a command added to
either document is found and must either run here or be listed in :data:`SKIPPED` with its reason. They run with
``bash`` in a temporary folder holding a copy of ``bundle/`` and the small generated files they name (``ct.nii.gz``
with two objects, its prompts, ``images/`` and ``prompts/``, a Decathlon ``data/`` folder, 2D frames and a tiled
TIFF), with ``.venv/bin`` first on ``PATH`` so ``python``, ``pam-monai`` and ``torchrun`` are the package's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pam_monai.data.synthetic import write_synthetic_datalist

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "bundle" / "docs").glob("*.md")))

SKIPPED = {
    "bash scripts/quickstart.sh": "sets up the environment itself (CI runs it)",
    "bash scripts/test.sh": "runs every suite itself (CI runs it)",
    "setup_monailabel.sh": "builds another virtual environment",
    "pam-monai convert-checkpoint propmask.pth": "needs the authors' checkpoint files (not redistributable)",
    "pam-monai convert-checkpoint box2mask.pth": "needs the authors' checkpoint files (not redistributable)",
    "--checkpoint propmask_monai.pt": "needs the converted authors' checkpoints",
    "benchmarks/run_gpu.sh": "needs a GPU",
    "scripts/train_on_device.sh": "needs a lent GPU",
    "--num_workers 14 --batch_size 64": "the GPU run of the default weights (14 loader processes, 700 volumes)",
    "$COMMON --target": "the CPU runs that trained the default weights: 240 generated volumes before the first step",
    "--dataset_dir runs/atlas": "the full atlas evaluation (17 structures, tens of minutes)",
    "--synthetic_volumes 300": "an hour's fine-tuning of the default weights on 300 generated volumes",
    "scripts/build_map.sh": "installs Docker and builds a MONAI Deploy package in the Deploy environment",
    "--dataset-dir runs/atlas": "the per-offset diagnostics on the atlas (51 objects x 40 rounds, tens of minutes)",
}
"""Commands not run here (a distinctive part of the command -> why)."""

STARTED = {
    "run training --config_file bundle/configs/train.json --bundle_root bundle --dataset_dir data": "Epoch: 1/",
    "torchrun --nproc_per_node 2 -m monai.bundle run training": "Epoch: 1/",
    '--eval_thicknesses_mm "[10,20,40]"': None,
}
"""Long runs (100 epochs, 54 propagations per object) run until they reach this log text (``None``: for
:data:`STARTED_SECONDS` without an error), then stop."""
STARTED_SECONDS = 90


def shown_commands() -> list[tuple[str, str]]:
    """``(document name, command)`` for each ``monai.bundle`` / ``pam-monai`` / ``python -m pam_monai`` line of the
    documents' bash blocks."""
    found = []
    for document in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", document.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = " ".join(line.split())
                if line.startswith("#") or not line:
                    continue
                if (
                    "monai.bundle" in line
                    or "python -m pam_monai" in line
                    or re.search(r"(^|[\s;&])(pam-monai|bash \S+\.sh)(\s|$)", line)
                ):
                    found.append((document.relative_to(ROOT).as_posix(), line))
    return found


def skip_reason(command: str) -> str | None:
    return next((why for part, why in SKIPPED.items() if part in command), None)


def _ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def _volume(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (truth * 400.0 + rng.normal(0.0, 20.0, truth.shape)).astype(np.float32)


def _write_case(folder: Path) -> None:
    """ct.nii.gz (200 x 260 x 64, 1 x 1 x 2 mm): one object inside the README's boxes on slice 42 and in its 3D box,
    another across the coronal slice 256; the prompt mask, a Slicer ROI and the 2D / large-image inputs."""
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shape = (200, 260, 64)
    first = _ellipsoid(shape, (130, 155, 43), (26, 30, 12))
    second = _ellipsoid(shape, (65, 252, 35), (20, 12, 20))
    nib.save(nib.Nifti1Image(_volume(first | second), affine), folder / "ct.nii.gz")
    prompt = np.zeros(shape, np.uint8)
    prompt[:, :, 42] = first[:, :, 42]
    nib.save(nib.Nifti1Image(prompt, affine), folder / "prompt.nii.gz")
    # The README's 2D box on slice 42 as a flat ROI, in RAS world coordinates (the affine is RAS).
    markup = {"type": "ROI", "coordinateSystem": "RAS", "center": [130.0, 155.0, 84.0], "size": [61.0, 71.0, 0.0]}
    (folder / "box.mrk.json").write_text(json.dumps({"markups": [markup]}))
    # segment-folder and the bundle's --dataset_dir: a small case with its box prompt
    for name in ("images", "cases"):
        (folder / name).mkdir()
    small = _ellipsoid((48, 48, 24), (24, 24, 12), (10, 9, 7))
    nib.save(nib.Nifti1Image(_volume(small, 1), affine), folder / "images" / "case.nii.gz")
    shutil.copytree(folder / "images", folder / "prompts")
    (folder / "prompts" / "case.nii.gz").unlink()
    (folder / "prompts" / "case.json").write_text(json.dumps({"box": [14, 15, 34, 33], "slice": 12}))
    shutil.copy(folder / "images" / "case.nii.gz", folder / "cases" / "ct.nii.gz")
    shutil.copy(folder / "prompts" / "case.json", folder / "cases" / "ct.json")
    # a Decathlon folder: two training volumes, two held out (one per process of the two-process evaluation)
    write_synthetic_datalist(folder / "data", 4, shape=(40, 40, 32), seed=5, num_validation=2)
    # 2D sets: guides/NAME.png + NAME_mask.png, frames/*.png; a tiled TIFF with discs like the guides'
    for name in ("guides", "frames"):
        (folder / name).mkdir()
    for i, (centre, radius) in enumerate([((40, 50), 18), ((60, 45), 22), ((50, 70), 15)]):
        disc = _ellipsoid((110, 120), centre, (radius, radius))
        image = Image.fromarray(np.clip(_volume(disc, i) * 0.5 + 40, 0, 255).astype(np.uint8))
        if i == 0:
            image.save(folder / "guides" / "g.png")
            Image.fromarray(disc.astype(np.uint8) * 255).save(folder / "guides" / "g_mask.png")
        else:
            image.save(folder / "frames" / f"f{i}.png")
    import tifffile

    large = np.zeros((600, 600), bool)
    for centre in ((100, 120), (300, 420), (480, 200)):
        large |= _ellipsoid(large.shape, centre, (20, 20))
    tifffile.imwrite(
        folder / "slide.tif", np.clip(_volume(large, 3) * 0.5 + 40, 0, 255).astype(np.uint8), tile=(256, 256)
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "bundle", folder / "bundle", ignore=shutil.ignore_patterns("__pycache__", "eval"))
    _write_case(folder)
    return folder


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore"}  # fmt: skip


def test_the_documents_show_commands_and_every_skip_names_one() -> None:
    commands = [command for _, command in shown_commands()]
    assert len(commands) >= 15
    for part in SKIPPED:
        assert any(part in command for command in commands), f"SKIPPED names no shown command: {part!r}"
    for part in STARTED:
        assert any(part in command for command in commands), f"STARTED names no shown command: {part!r}"


def _run_until(command: str, cwd: Path, marker: str | None, seconds: float) -> tuple[int | None, str]:
    """Run ``command`` until it ends, or until ``marker`` appears in its output (``None``: until ``seconds``)."""
    log = cwd / "started.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(  # noqa: S602 - the documents' own command lines
            command, shell=True, executable="/bin/bash", cwd=cwd, env=_env(), stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started = time.monotonic()
        while process.poll() is None:
            text = log.read_text(errors="replace")
            if (marker is not None and marker in text) or time.monotonic() - started > (
                seconds if marker is None else 900
            ):
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
                return None, text
            time.sleep(2)
    return process.returncode, log.read_text(errors="replace")


@pytest.mark.parametrize(("document", "command"), shown_commands(), ids=[f"{d}:{c[:60]}" for d, c in shown_commands()])
def test_shown_command_runs_verbatim(workspace: Path, document: str, command: str) -> None:
    reason = skip_reason(command)
    if reason is not None:
        pytest.skip(reason)
    marker = next((m for part, m in STARTED.items() if part in command), "")
    if marker != "":
        returncode, text = _run_until(command, workspace, marker, STARTED_SECONDS)
        assert returncode in (None, 0), text[-3000:]
        assert "Traceback" not in text and "error:" not in text, text[-3000:]
        if marker is not None:
            assert marker in text, text[-3000:]
        return
    process = subprocess.run(  # noqa: S602 - the documents' own command lines
        command, shell=True, executable="/bin/bash", cwd=workspace, env=_env(), capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert process.returncode == 0, f"{document}: {command}\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
