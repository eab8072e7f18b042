"""The transforms' array functions live in a MONAI-free module; the MONAI transform modules re-export them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pam_monai.transforms as transforms
from pam_monai.transforms import functional, intensity, roi


def test_transform_modules_reexport_the_functions() -> None:
    for name in ("apply_window", "candidate_windows", "guided_window", "pooled_foreground_window"):
        assert getattr(intensity, name) is getattr(functional, name)
    for name in ("RoIWindow", "crop_resize", "mask_bounding_box", "paste_back", "square_roi"):
        assert getattr(roi, name) is getattr(functional, name)
    assert transforms.guided_window is functional.guided_window
    assert transforms.SquareRoICropd is roi.SquareRoICropd
    with pytest.raises(AttributeError, match="nothing"):
        transforms.nothing  # noqa: B018


def test_the_functional_module_imports_no_monai() -> None:
    code = "import sys, pam_monai.transforms.functional\nprint('monai' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
