"""Keep the notebooks' shared cells consistent; the `.ipynb` files themselves are the source a person edits.

    .venv/bin/python tools/make_notebooks.py                 # rewrite the tagged shared cells in place
    .venv/bin/python tools/make_notebooks.py --check         # exit 1 (and name them) if any would change
    .venv/bin/python tools/make_notebooks.py --execute --only 14,2*   # ... and run those in SMOKE mode

Edit a notebook in JupyterLab as usual. The only cell this tool writes is the one tagged `settings`: it
passes every name of the cell tagged `parameters` to `notebook_settings(<notebook name>, ...)`, which honours
or refuses each (avmaster_core.notebook_params), and its globals (`scope=globals()`), so that a name papermill
injects which the notebook does not declare (`-p SEED 2`) is refused, so adding a parameter to a notebook means adding its line to
the parameters cell and running this tool. --execute re-runs notebooks in place with their SMOKE defaults
(working directory notebooks/) and keeps the outputs, which nbval compares (`make test`): cells starting
with `# NBVAL_CHECK_OUTPUT` must give the same text when re-run, `# NBVAL_IGNORE_OUTPUT` cells only have to
run. Re-execute a notebook after changing it or the shipped runs it reads.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(REPO))
from avmaster_core.notebooks import find_notebooks  # noqa: E402

CHECK = "# NBVAL_CHECK_OUTPUT\n"
CALL = "settings = notebook_settings("
WIDTH = 110


def tagged(nb, tag: str):
    """The one cell carrying `tag` (ValueError naming the tag when there is not exactly one)."""
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one cell tagged {tag!r}, found {len(cells)}")
    return cells[0]


def declared(cell) -> list[str]:
    """The names a parameters cell assigns, in order."""
    return [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]


def settings_source(name: str, parameters_cell) -> str:
    """The settings cell of notebook `name`: every parameter goes to notebook_settings."""
    args = [f'"{name}"'] + [f"{n}={n}" for n in declared(parameters_cell)] + ["scope=globals()"]
    lines, line = [], CALL
    for i, arg in enumerate(args):
        piece = arg + (", " if i < len(args) - 1 else ")")
        if len(line) + len(piece) > WIDTH:
            lines.append(line.rstrip())
            line = " " * len(CALL)
        line += piece
    return CHECK + "\n".join(lines + [line]) + "\nprint(settings)"


def sync(path: Path) -> bool:
    """Rewrite the settings cell of the notebook at `path` from its parameters cell; True if it changed."""
    nb = nbformat.read(str(path), as_version=4)
    cell = tagged(nb, "settings")
    source = settings_source(path.stem, tagged(nb, "parameters"))
    if cell.source == source:
        return False
    cell.source = source
    nbformat.write(nb, str(path))
    return True


def execute(path: Path) -> float:
    """Run a notebook in place (SMOKE defaults, working directory notebooks/) and keep its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}, timeout=900,
                   extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
    nbformat.write(nb, str(path))
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a settings cell is stale")
    parser.add_argument("--execute", action="store_true", help="also run each notebook in SMOKE mode, storing outputs")
    parser.add_argument("--only", help="notebooks by number, whole name or glob (comma-separated), as `make demo`")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="notebook folder (default: notebooks/)")
    args = parser.parse_args(argv)
    stale = []
    for path in find_notebooks(args.notebooks, args.only):
        if args.check:
            nb = nbformat.read(str(path), as_version=4)
            if tagged(nb, "settings").source != settings_source(path.stem, tagged(nb, "parameters")):
                stale.append(path.name)
            continue
        changed = sync(path)
        took = f", executed in {execute(path):.1f} s" if args.execute else ""
        print(f"{path.name}: settings cell {'rewritten' if changed else 'unchanged'}{took}", flush=True)
    if stale:
        print(f"stale settings cells (run tools/make_notebooks.py): {', '.join(stale)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
