"""``pam-monai segment`` as users meet it: what it imports, what it prints, what its report and last line say."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object, ellipsoid, object_volume

from pam_monai.cli import main as cli
from pam_monai.networks import build_box2mask, build_propmask, save_network

SHAPE = (40, 36, 24)
AFFINE = np.diag([0.9, 0.9, 2.0, 1.0])
HEAVY = ("mlflow", "matplotlib", "ignite", "pandas")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("startup")
    truth = ellipsoid(SHAPE, (20, 18, 12), (9, 8, 6))
    nib.save(nib.Nifti1Image(object_volume(truth), AFFINE), root / "image.nii.gz")
    prompt = np.zeros(SHAPE, np.uint8)
    prompt[:, :, 12] = truth[:, :, 12]
    nib.save(nib.Nifti1Image(prompt, AFFINE), root / "prompt.nii.gz")
    torch.manual_seed(0)
    save_network(always_object(build_propmask("light", input_size=64)), root / "propmask.pt")
    save_network(always_object(build_box2mask("light", input_size=64)), root / "box2mask.pt")
    return {"root": root, "image": root / "image.nii.gz", "prompt": root / "prompt.nii.gz"}


def _arguments(case: dict[str, Path], out: Path, *flags: str) -> list[str]:
    root = case["root"]
    return [
        "segment",
        str(case["image"]),
        "--mask-prompt",
        str(case["prompt"]),
        "-o",
        str(out),
        "--checkpoint",
        str(root / "propmask.pt"),
        "--box2mask-checkpoint",
        str(root / "box2mask.pt"),
        "--no-progress",
        "--thickness-mm",
        "6",
        "--walker-weight",
        "0",
        *flags,
    ]


def _run(arguments: list[str], *python_flags: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "pam_monai", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


@pytest.fixture(scope="module")
def segment_run(case: dict[str, Path]) -> dict:
    """One ``python -X importtime -m pam_monai segment`` with a report, a preview, under umask 022."""
    out = case["root"] / "run"
    previous = os.umask(0o022)
    try:
        done = _run(
            _arguments(case, out / "seg.nii.gz", "--report", str(out / "report.json"), "--preview", str(out / "p.png")),
            "-X",
            "importtime",
        )
    finally:
        os.umask(previous)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    other = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    return {"done": done, "imported": imported, "stderr": other, "out": out}


def test_segment_imports_no_heavy_module(segment_run: dict) -> None:
    assert segment_run["done"].returncode == 0, segment_run["done"].stderr[-2000:]
    heavy = sorted(name for name in segment_run["imported"] if name.split(".")[0] in HEAVY)
    assert not heavy, f"pam-monai segment imported {heavy[:10]}"
    # `import monai` loads every MONAI submodule (and with them the heavy ones): the command needs none of it.
    monai = sorted(name for name in segment_run["imported"] if name.split(".")[0] == "monai")
    assert not monai, f"pam-monai segment imported {monai[:10]}"
    # The random walker's scikit-image / scipy.sparse load only when a walker runs (--walker-weight 0 here), and
    # nibabel goes without pydicom (and its PIL, requests, urllib3) for a NIfTI image.
    # (`-X importtime` lists nibabel's refused attempt at `pydicom` itself, but none of its modules.)
    skipped = ("skimage", "pydicom.", "requests", "urllib3")
    assert not [name for name in segment_run["imported"] if name.startswith(skipped)]
    assert "pam_monai.cli.segment" in segment_run["imported"]  # the profile is of the command itself


def test_a_correction_imports_no_monai(case: dict[str, Path], segment_run: dict) -> None:
    """``--previous`` with ``--click`` reads the earlier result as the image is read (nibabel), not through MONAI."""
    assert segment_run["done"].returncode == 0, segment_run["done"].stderr[-2000:]
    corrected = case["root"] / "correction" / "seg.nii.gz"
    arguments = _arguments(case, corrected)
    at = arguments.index("--mask-prompt")
    arguments[at : at + 2] = ["--previous", str(segment_run["out"] / "seg.nii.gz"), "--click", "20,18,9,+"]
    done = _run(arguments, "-X", "importtime")
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "pam_monai.cli.segment" in imported and "nibabel" in imported
    assert not sorted(name for name in imported if name.split(".")[0] in ("monai", *HEAVY))
    assert nib.load(corrected).get_fdata()[20, 18, 9] == 1


def test_segment_prints_only_its_own_lines(segment_run: dict) -> None:
    done = segment_run["done"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert segment_run["stderr"] == []  # no third-party warnings or log records (--no-progress: no bar)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"label 1: [\d.]+ ml \(\d+ voxels\), \d+ slices = [\d.]+ mm along axis 2", lines[0])
    assert lines[1].startswith(f"wrote {segment_run['out'] / 'seg.nii.gz'} in ")
    assert "startup" in lines[1] and "propagation" in lines[1]


def test_segment_outputs_have_the_umask_permissions(segment_run: dict) -> None:
    written = sorted(segment_run["out"].iterdir())
    assert [p.name for p in written] == ["p.png", "report.json", "seg.nii.gz"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)


def test_report_gives_volume_extent_and_stage_seconds(segment_run: dict) -> None:
    report = json.loads((segment_run["out"] / "report.json").read_text())
    labels = np.asarray(nib.load(segment_run["out"] / "seg.nii.gz").dataobj)
    obj = report["objects"][0]
    covered = np.nonzero(labels.any(axis=(0, 1)))[0]
    assert obj["volume_ml"] == pytest.approx((labels > 0).sum() * 0.9 * 0.9 * 2.0 / 1000, rel=1e-3)
    assert obj["extent"] == {"slices": int(covered[-1] - covered[0] + 1), "mm": (covered[-1] - covered[0] + 1) * 2.0}
    seconds = report["seconds"]
    assert list(seconds)[0] == "startup" and list(seconds)[-2:] == ["total", "wall"]
    assert {"read", "propagation", "write"} <= set(seconds)
    assert all(v >= 0 for v in seconds.values())
    assert seconds["wall"] == pytest.approx(seconds["startup"] + seconds["total"], abs=2e-4)


def _noisy_command(args) -> dict:  # noqa: ANN001
    warnings.warn("a third-party warning", UserWarning, stacklevel=1)
    logging.getLogger("some.library").warning("a third-party log record")
    return {"output": "x"}


@pytest.mark.parametrize("verbose", [False, True])
def test_verbose_shows_third_party_messages(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path, verbose: bool
) -> None:
    monkeypatch.setattr(cli, "_convert", _noisy_command)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(["convert-checkpoint", "a.pth", "-o", str(tmp_path / "b.pt"), *(["-v"] * verbose)])
    assert code == 0
    assert any(r.getMessage() == "a third-party log record" for r in caplog.records) is verbose
    assert any("a third-party warning" in str(w.message) for w in caught) is verbose
    # Afterwards library users see everything again.
    assert logging.root.manager.disable == logging.NOTSET
    logging.getLogger("some.library").warning("after")
    assert caplog.records[-1].getMessage() == "after"


def test_nibabel_without_pydicom_only_where_neither_is_loaded() -> None:
    code = (
        "import sys\n"
        "from pam_monai.cli.main import nibabel_without_pydicom\n"
        "nibabel_without_pydicom()\n"
        "import nibabel.nifti1\n"
        "print('pydicom' in sys.modules, nibabel.nifti1.have_dicom)\n"
        "import pydicom\n"  # importable again afterwards (DICOM series are read with it)
        "print(pydicom.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "pydicom"]


def test_package_and_cli_import_nothing_heavy_until_used() -> None:
    code = (
        "import sys, pam_monai, pam_monai.cli.main\n"
        "print(sorted(m for m in ('torch', 'monai', 'numpy', 'nibabel') if m in sys.modules))\n"
        "from pam_monai import PAMPredictor, PropagationInferer, build_propmask, build_box2mask\n"
        "print(PAMPredictor.__module__, PropagationInferer.__module__, build_propmask.__module__)\n"
        "try:\n    pam_monai.nothing\nexcept AttributeError as error:\n    print('AttributeError', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "pam_monai.predictor pam_monai.inferers.propagation pam_monai.networks.configs"
    assert lines[2].startswith("AttributeError") and "nothing" in lines[2]


def test_benchmark_charges_each_package_its_own_import_time(benchmark_module) -> None:  # noqa: ANN001
    bench = benchmark_module("bench_startup")
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       300 |        300 |     torch._C",
            "import time:      1000 |       1300 |   torch",
            "import time:       500 |        500 |       mlflow.entities",
            "import time:       200 |        700 |     mlflow",
            "import time:       100 |       2100 | pam_monai.predictor",
            "some other line",
        ]
    )
    packages, heavy = bench.import_profile(stderr)
    assert packages == pytest.approx({"torch": 0.0013, "mlflow": 0.0007, "pam_monai": 0.0001})
    assert heavy == ["mlflow"]
