"""The benchmark scripts are not run by the suite (they read the shared sets, for minutes), so a
core refactor can leave one importing a name that moved. Every `from mrl_tui… import name` in them,
at the top or inside a function, must resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def _project_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mrl_tui")
        for alias in node.names
    ]


def test_there_are_benchmarks_to_check() -> None:
    assert len(BENCHMARKS) >= 10
    assert any(_project_imports(path) for path in BENCHMARKS)


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_project_name_a_benchmark_imports_exists(path: Path) -> None:
    missing = []
    for module, name in _project_imports(path):
        try:
            found = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{module}: {exc}")
            continue
        if not hasattr(found, name):
            try:
                importlib.import_module(f"{module}.{name}")  # a submodule
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, missing
