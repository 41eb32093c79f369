"""tools/mutate.py's module table points at files that exist (issue 28: after the move into subpackages every
source path was stale, so mutmut would have mutated nothing), and its name patterns match functions there."""
from __future__ import annotations

import ast
import fnmatch
import importlib.util
from pathlib import Path

import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutate", REPO / "tools" / "mutate.py")
mutate = importlib.util.module_from_spec(spec)
sys.modules["mutate"] = mutate  # dataclasses look their module up there
spec.loader.exec_module(mutate)


def _mutant_names(source: Path) -> list[str]:
    """A mutant name of every function and method in `source`, as mutmut forms them."""
    module = ".".join(source.relative_to(REPO).with_suffix("").parts)
    names = []
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(f"{module}.x_{node.name}__mutmut_1")
        elif isinstance(node, ast.ClassDef):
            names += [f"{module}.xǁ{node.name}ǁ{m.name}__mutmut_1" for m in node.body
                      if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return names


@pytest.mark.parametrize("name", list(mutate.MODULES))
def test_sources_tests_and_patterns_exist(name):
    module = mutate.MODULES[name]
    for source in module.sources:
        assert (REPO / source).is_file(), f"{name}: {source} does not exist"
    for test in module.tests:
        path, _, test_name = test.partition("::")
        assert (REPO / path).is_file(), f"{name}: {path} does not exist"
        assert not test_name or f"def {test_name}(" in (REPO / path).read_text(), f"{name}: no test {test}"
    names = [n for source in module.sources for n in _mutant_names(REPO / source)]
    for pattern in module.patterns:
        assert any(fnmatch.fnmatchcase(n, pattern) for n in names), f"{name}: {pattern} matches no function"


def test_folders_are_distinct():
    folders = [m.folder_name for m in mutate.MODULES.values()]
    assert len(folders) == len(set(folders))
