"""Lazy package attributes (pam_monai.lazy): imported on first read, kept, listed by dir, unknown names refused."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from pam_monai.lazy import lazy_exports


@pytest.fixture
def package(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("fake_lazy_package")
    module.__all__ = ["dumps", "sqrt"]
    module.__getattr__, module.__dir__ = lazy_exports(
        "fake_lazy_package", {"dumps": "json", "sqrt": "math"}, module.__all__
    )
    monkeypatch.setitem(sys.modules, "fake_lazy_package", module)
    return module


def test_a_name_is_imported_on_first_read_and_kept(package: types.ModuleType) -> None:
    import json

    assert "dumps" not in vars(package)
    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps


def test_dir_lists_the_public_names_before_they_are_read(package: types.ModuleType) -> None:
    assert {"dumps", "sqrt"} <= set(dir(package))


def test_an_unknown_name_is_an_attribute_error(package: types.ModuleType) -> None:
    with pytest.raises(AttributeError, match="fake_lazy_package.*nope"):
        package.nope  # noqa: B018


@pytest.mark.parametrize("package_name", ["pam_monai", "pam_monai.inferers", "pam_monai.transforms", "pam_monai.data"])
def test_importing_a_package_loads_neither_torch_nor_monai(package_name: str) -> None:
    code = f"import sys, {package_name}; print(sorted({{'torch', 'monai'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
