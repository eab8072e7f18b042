"""Attributes of a package imported on first use (PEP 562), so that importing the package stays cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, sources: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package whose names are imported on first use.

    Args:
        package: the package's ``__name__``.
        sources: each lazily imported name and the module it comes from (absolute, or relative to ``package``).
        public: the package's ``__all__``.

    Returns:
        ``(__getattr__, __dir__)``: the first imports the name's module when the name is first read and keeps the
        value in the package's namespace, so later reads cost nothing; the second lists the public names too.

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, {"PAMPredictor": "pam_monai.predictor"}, __all__)
    """
    public = tuple(public)

    def __getattr__(name: str) -> Any:
        if name in sources:
            value = getattr(importlib.import_module(sources[name], package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
