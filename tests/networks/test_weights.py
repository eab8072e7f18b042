"""The default weights are found in the installed package (no repository around it) or where PAM_MONAI_MODELS says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pam_monai.errors import CheckpointError
from pam_monai.networks.weights import DEFAULT_BOX2MASK, DEFAULT_PROPMASK, MODELS_ENV, default_checkpoints

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_weights_are_the_bundles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    propmask, box2mask = default_checkpoints()
    assert (propmask, box2mask) == (DEFAULT_PROPMASK, DEFAULT_BOX2MASK)
    for packaged, bundled in ((propmask, "model.pt"), (box2mask, "box2mask.pt")):
        assert packaged.read_bytes() == (ROOT / "bundle" / "models" / bundled).read_bytes()


def test_the_predictor_re_exports_them() -> None:
    from pam_monai import predictor

    assert predictor.default_checkpoints is default_checkpoints
    assert (predictor.DEFAULT_PROPMASK, predictor.DEFAULT_BOX2MASK) == (DEFAULT_PROPMASK, DEFAULT_BOX2MASK)


def test_models_folder_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert default_checkpoints() == (tmp_path / "model.pt", tmp_path / "box2mask.pt")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match=f"no default PropMask weights .*{MODELS_ENV}=") as info:
        default_checkpoints()
    assert "\n" not in str(info.value) and "--checkpoint" in str(info.value)


def test_a_wheel_install_finds_the_weights(tmp_path: Path) -> None:
    """``pip install . --target`` from a copy of the project, the copy deleted: the weights come with the package."""
    source, site = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "pam_monai", source / "pam_monai", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "bundle" / "models", source / "bundle" / "models")
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*install, "--target", str(site), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(source)
    probe = (
        "import pam_monai, torch; from pam_monai.networks.weights import default_checkpoints; "
        "p, b = default_checkpoints(); print(pam_monai.__file__); print(p); print(b); "
        "print(len(torch.load(p, weights_only=True)), len(torch.load(b, weights_only=True)))"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    package, propmask, box2mask, sizes = found.stdout.split("\n")[:4]
    assert Path(package).is_relative_to(site)
    for path in (Path(propmask), Path(box2mask)):
        assert path.is_relative_to(site) and path.is_file() and not path.is_symlink()
    expected = [len(torch.load(p, weights_only=True)) for p in (DEFAULT_PROPMASK, DEFAULT_BOX2MASK)]
    assert [int(n) for n in sizes.split()] == expected
