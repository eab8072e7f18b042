"""The package's shape: layers import only downwards, no import cycles, no private names across modules, no module
over 500 lines, command-line front ends only in ``pam_monai.cli``. Read from the source (``ast``), nothing is
imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pam_monai"

LAYERS: dict[str, int] = {
    "pam_monai.errors": 0,
    "pam_monai.lazy": 0,
    "pam_monai.networks": 1,
    "pam_monai.data": 1,
    "pam_monai.prompts": 2,
    "pam_monai.transforms": 3,
    "pam_monai.inferers": 4,
    "pam_monai.images2d": 4,
    "pam_monai.engines": 5,
    "pam_monai.evaluation": 5,
    "pam_monai.visualize": 5,
    "pam_monai.predictor": 6,
    "pam_monai.workflows": 6,
    "pam_monai.cli": 7,
    "pam_monai.__main__": 7,
    "pam_monai": 7,
}
"""Each top-level part of the package and its layer: a module may import its own layer and the ones below."""

KNOWN_UPWARD: set[tuple[str, str]] = set()
"""Upward imports left to move (allowed to disappear, not to grow): none now."""

MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    part = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[part]


def _imports(module: str, path: Path) -> list[tuple[str, str, bool]]:
    """``(imported module, imported name, at module level)`` for every ``pam_monai`` import of ``module``."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", id(node) in top) for a in node.names if a.name.startswith("pam_monai")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            if base.startswith("pam_monai"):
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    out.append((full if full in MODULES else base, alias.name, id(node) in top))
    return out


def test_no_module_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_part_has_a_layer() -> None:
    assert [name for name in MODULES if not any(name == p or name.startswith(p + ".") for p in LAYERS)] == []


def test_no_upward_imports() -> None:
    upward = {
        (module, target)
        for module, path in MODULES.items()
        for target, _, _ in _imports(module, path)
        if _layer(target) > _layer(module)
    }
    assert upward - KNOWN_UPWARD == set()


def test_no_private_names_imported_across_modules() -> None:
    private = [
        f"{module} imports {name} from {target}"
        for module, path in MODULES.items()
        for target, name, _ in _imports(module, path)
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert private == []


def test_no_import_cycles() -> None:
    """Module-level imports between modules form no cycle (a package importing its own submodules is fine)."""
    graph = {
        module: {t for t, _, top in _imports(module, path) if top and t in MODULES and t != module}
        for module, path in MODULES.items()
    }
    for module in graph:  # a package's __init__ re-exporting its children is not a cycle through them
        if MODULES[module].name == "__init__.py":
            graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def command_line_parts(tree: ast.Module) -> list[str]:
    """What makes a module a command-line front end: an ``argparse`` import (anywhere in it), a module-level
    ``main`` function, an ``if __name__ == "__main__"`` block."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
            found.append("imports argparse")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse" and not node.level:
            found.append("imports argparse")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main":
            found.append("defines main()")
        elif isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            found.append('runs under if __name__ == "__main__"')
    return found


def test_command_lines_live_in_the_cli_package() -> None:
    """The library is imported, never run: every ``python -m`` front end is a module of ``pam_monai.cli``."""
    outside = {
        name: parts
        for name, path in MODULES.items()
        if not (name == "pam_monai.cli" or name.startswith("pam_monai.cli."))
        and (parts := command_line_parts(ast.parse(path.read_text())))
    }
    assert outside == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import argparse\n", ["imports argparse"]),
        ("def run():\n    from argparse import ArgumentParser\n", ["imports argparse"]),
        ("def main(argv=None):\n    return 0\n", ["defines main()"]),
        ('if __name__ == "__main__":\n    pass\n', ['runs under if __name__ == "__main__"']),
        ("from pam_monai.cli.main import main\n\ndef domain():\n    pass\n", []),
    ],
)
def test_command_line_parts_are_found(source: str, found: list[str]) -> None:
    assert command_line_parts(ast.parse(source)) == found
