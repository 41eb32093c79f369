"""The package's shape: short functions, no reaching into another module's private names, no dangling citations."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "avmaster_core"
MAX_FUNCTION_LINES = 80   # from `def` to the last line of the body, nested functions included


def _modules() -> dict[str, ast.Module]:
    """Dotted module name -> parsed source, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


MODULES = _modules()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The dotted name an ImportFrom refers to, relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = (PACKAGE / Path(*package[1:]) / "__init__.py").is_file() if len(package) > 1 else True
    base = package if is_package else package[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(module: str, tree: ast.Module) -> list[str]:
    """`from avmaster_core.x import _y` and `x._y` on an imported package module, from another module."""
    found, module_aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if not source.startswith("avmaster_core"):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in MODULES:
                    module_aliases[alias.asname or alias.name] = target
                elif _private(alias.name) and source != module:
                    found.append(f"{module}:{node.lineno} imports {source}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("avmaster_core") and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr)
                and module_aliases.get(node.value.id, module) != module):
            found.append(f"{module}:{node.lineno} uses {module_aliases[node.value.id]}.{node.attr}")
    return found


def test_no_function_in_the_package_is_over_80_lines():
    too_long = [f"{module}.{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
                for module, tree in MODULES.items() for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)


def test_no_module_imports_another_modules_private_names():
    found = [line for module, tree in MODULES.items() for line in _private_imports(module, tree)]
    assert not found, "make these public (drop the underscore) or move them:\n" + "\n".join(found)


def test_the_layout_checks_catch_what_they_look_for():
    tree = ast.parse("from avmaster_core.training.engine import _hidden\nfrom ..data import scoring\nscoring._secret()\n"
                     "from .losses import total_loss\n")
    assert _private_imports("avmaster_core.results.analysis", tree) == [
        "avmaster_core.results.analysis:1 imports avmaster_core.training.engine._hidden",
        "avmaster_core.results.analysis:3 uses avmaster_core.data.scoring._secret"]
    assert _absolute("avmaster_core.extract.pipeline", ast.parse("from ..core.store import x").body[0]) == \
        "avmaster_core.core.store"
    assert _absolute("avmaster_core.extract", ast.parse("from .video import x").body[0]) == \
        "avmaster_core.extract.video"


# -------------------------------------------------------------------------------------- cited documents
# Where a markdown document is cited: the package, the tests, the tools, the notebooks and every markdown file we ship.
CITING = ["README.md", "docs/*.md", "data/README.md", "results/*.md", "avmaster_core/**/*.py", "tests/*.py",
          "tools/*.py", "notebooks/*.ipynb"]
WRITTEN_NOT_CITED = {"gpu_benchmark.md"}   # a report the GPU suite writes (`--report`), not a document
MD_PATH = re.compile(r"[\w./$-]*\w\.md\b")
SECTION = re.compile(r"released-code\.md`?\s*((?:§[\d.]+(?:\s*[-–,]\s*)?)+)")


def _citing_files() -> list[Path]:
    return sorted({p for pattern in CITING for p in REPO.glob(pattern) if p.is_file()})


def _cited_document_exists(cited: str, citing: Path, shipped_names: set[str]) -> bool:
    """A bare name (`synthetic.md`) may be any shipped document; a path must resolve from the repository root or
    from the citing file's folder."""
    name = cited.rsplit("/", 1)[-1]
    if name in WRITTEN_NOT_CITED:
        return True
    if "/" not in cited:
        return name in shipped_names
    return any((base / cited).resolve().is_file() and REPO in (base / cited).resolve().parents
               for base in (REPO, citing.parent))


def test_every_cited_document_is_in_the_repository():
    shipped = {p.name for p in REPO.glob("**/*.md") if ".venv" not in p.parts and "build" not in p.parts}
    missing = sorted({f"{path.relative_to(REPO)}: {cited}" for path in _citing_files()
                      for cited in MD_PATH.findall(path.read_text())
                      if not _cited_document_exists(cited, path, shipped)})
    assert not missing, "cite a document of the repository (docs/) instead:\n" + "\n".join(missing)


def test_cited_sections_of_the_released_code_notes_exist():
    headings = {m for m in re.findall(r"^#{2,3} ([\d.]+?)\.? ", (REPO / "docs" / "released-code.md").read_text(),
                                      re.M)}
    cited = {(path.relative_to(REPO), number) for path in _citing_files()
             for group in SECTION.findall(path.read_text()) for number in re.findall(r"§([\d.]*\d)", group)}
    assert cited, "expected citations of docs/released-code.md sections"
    wrong = sorted(f"{path}: §{number}" for path, number in cited if number not in headings)
    assert not wrong, f"no such heading in docs/released-code.md (it has {sorted(headings)}):\n" + "\n".join(wrong)


def test_the_readme_module_map_lists_every_module():
    readme = (REPO / "README.md").read_text()
    mapped = set(re.findall(r"^\| [^|]* \| `([\w/]+\.py)` \|", readme[readme.index("## Module map"):], re.M))
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert mapped == modules, f"README module map: add {sorted(modules - mapped)}, drop {sorted(mapped - modules)}"


# ------------------------------------------------------------------------------ floors (docs/design.md, "Layout")
# Each subpackage is a floor; a module imports only its own floor and those below (the core imports nothing of
# the package above it), so the module graph has no cycle and the core can be used alone.
FLOORS = ("core", "data", "extract", "training", "results", "reproduction", "cli")
CORE_THIRD_PARTY = {"torch", "numpy", "h5py"}
TOOL_DEPENDENCIES = ("pandas", "av", "submitit", "open_clip", "torchvggish", "matplotlib", "seaborn", "papermill")


def _floor(module: str) -> int:
    """The floor of a dotted module name (the package's __init__: above everything, it only re-exports)."""
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else len(FLOORS)  # resources: data


def _package_imports(module: str, tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, int]]:
    """(imported package module, line) of `module`'s imports, at module level only or everywhere."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets if t.startswith("avmaster_core.") and t in MODULES and t != module]
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _package_imports(m, tree, top_level_only=False)} for m, tree in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (imports inside functions included), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_graph_has_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_each_module_imports_only_its_floor_and_those_below():
    upward = [f"{m}:{line} imports {t} (floor {FLOORS[_floor(t)]} is above {FLOORS[_floor(m)]})"
              for m, tree in MODULES.items() if m != "avmaster_core"
              for t, line in _package_imports(m, tree, top_level_only=False) if _floor(t) > _floor(m)]
    assert not upward, "\n".join(upward)


def test_the_layout_checks_catch_a_cycle_and_an_upward_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _floor("avmaster_core.core.model") < _floor("avmaster_core.training.engine") < _floor("avmaster_core.cli")


def test_the_core_imports_only_torch_numpy_and_h5py():
    third = set()
    for module, tree in MODULES.items():
        if _floor(module) == 0:
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
                third |= {n.split(".")[0] for n in names if n and n.split(".")[0] != "avmaster_core"}
    import sys

    assert third - set(sys.stdlib_module_names) <= CORE_THIRD_PARTY, sorted(third - set(sys.stdlib_module_names))


def test_the_core_imports_without_the_tools_dependencies():
    """Every core module imports in a fresh interpreter where pandas, PyAV, submitit, ... cannot be imported."""
    import subprocess
    import sys

    core = [m for m in MODULES if _floor(m) == 0]
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in TOOL_DEPENDENCIES)
    code = f"import sys; {blocked}; import importlib; [importlib.import_module(m) for m in {core!r}]; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
