"""Run the project's notebooks headless, in order, with papermill.

    python -m avmaster_core.results.notebooks list
    python -m avmaster_core.results.notebooks run --mode smoke --out build/notebooks [-p EPOCHS 2] [--only 1*]

`run` executes notebooks/NN_*.ipynb in name order with the "python3" kernel (which `make venv` installs
into the virtualenv), each in the notebooks folder (as JupyterLab would), with SMOKE=True (`--mode
smoke`: CPU, bundled synthetic data and the shipped synthetic runs, minutes; `make demo`) or SMOKE=False
(`--mode full`: real features, a GPU; `make reproduce`). Both write tables and figures into results/
(RESULTS=../results; the smoke tables label our numbers "ours (synthetic)"), but only for a notebook run with
its default parameters: with `-p SEEDS 2` (or any parameter that changes what is computed) it writes under
build/ unless `-p RESULTS ...` is given; a notebook run by hand or by nbval in SMOKE mode writes into
build/smoke/results (see `notebook_settings`).
`-p NAME VALUE` overrides a parameter of the notebooks that declare it in their `parameters` cell; the
value is read as a Python literal when it is one (2, 0.5, False, "x") and as text otherwise (cuda).
Executed copies go to --out (never into notebooks/). The first failing notebook stops the run with
its name, the failing cell and the error; its executed copy holds the full traceback.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import os
import re
import sys
import time
import warnings
from pathlib import Path

# Notebooks import this module first: tqdm.auto's "IProgress not found" warning (no ipywidgets) would land in
# the stderr of checked cells and is no news to a reader.
warnings.filterwarnings("ignore", message="IProgress not found")

KERNEL = "python3"
# The kernel's own start-up chatter (e.g. "running over TCP without encryption") is not the user's news.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
DEFAULT_NOTEBOOKS = Path("notebooks")


# The settings of a notebook's parameters cell live in notebook_params; re-exported here (public names).
from ..core.options import AT_LEAST_0  # noqa: E402
from .notebook_params import (DEMO_RESULTS, FULL_RESULTS, SMOKE_DATA, SMOKE_RESULTS, SMOKE_RUNS,  # noqa: E402,F401
                              NotebookSettings, ParameterError, changed_parameters, notebook_settings,
                              papermill_module)


class NotebookRunError(RuntimeError):
    """A notebook failed; the message names it, the cell and the error."""


def matches(notebook: Path, pattern: str) -> bool:
    """`--only` matching: a notebook number ("14" or "14_"), a whole name (with or without .ipynb) or a glob
    ("1*"); never a substring, so "10_" does not select 17_table10_weight_sharing."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(notebook.name, pattern) or fnmatch.fnmatch(notebook.stem, pattern)
    if re.fullmatch(r"\d\d_?", pattern):
        return notebook.name[:2] == pattern[:2]
    return pattern in (notebook.name, notebook.stem)


def find_notebooks(folder: Path = DEFAULT_NOTEBOOKS, only: str | None = None) -> list[Path]:
    """notebooks/NN_*.ipynb in name order; `only` keeps those matching a number, a whole name or a glob
    (comma-separated for several, e.g. "00,12_,2*"); see `matches`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} not found; run from the repository root or pass --notebooks")
    found = sorted(p for p in folder.glob(NOTEBOOK_GLOB) if p.is_file())
    if only:
        patterns = [p.strip() for p in only.split(",") if p.strip()]
        found = [p for p in found if any(matches(p, pat) for pat in patterns)]
    return found


def parse_value(text: str):
    """A command-line parameter value: a Python scalar literal where it is one, else the text itself."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    # "2,3" reads as a tuple, which papermill would inject as the text "(2, 3)": keep lists as written
    return text if isinstance(value, (tuple, list, set, dict)) else value


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    return set(papermill_module().inspect_notebook(str(notebook)))


def run_notebooks(notebooks: list[Path], out: Path, smoke: bool, parameters: dict | None = None,
                  echo=print, threads: int = 0) -> list[tuple[Path, float]]:
    """Execute each notebook into `out`; return (executed copy, seconds) per notebook. threads: the kernels'
    torch threads (kernel_threads: 0 = one in smoke mode unless OMP_NUM_THREADS is set).

    Raises NotebookRunError at the first failure, and ValueError for a parameter that no notebook declares.
    """
    papermill = papermill_module()
    PapermillExecutionError = papermill.exceptions.PapermillExecutionError

    parameters = dict(parameters or {})
    if "SMOKE" in parameters:
        raise ValueError("set SMOKE with --mode smoke|full, not with -p SMOKE")
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    unused = sorted(set(parameters) - set().union(*declared.values())) if declared else sorted(parameters)
    if unused:
        raise ValueError(f"parameter(s) {unused} are declared by none of the selected notebooks; "
                         "check the spelling against their `parameters` cells")
    out = Path(out)
    for folder in {nb.parent.resolve() for nb in notebooks}:
        if out.resolve() == folder or folder in out.resolve().parents:
            raise ValueError(f"--out {out} is inside the notebook folder {folder}; write executed copies "
                             "elsewhere (e.g. build/notebooks)")
    out.mkdir(parents=True, exist_ok=True)
    with kernel_environment(kernel_threads(threads, smoke)):
        done, start = [], time.perf_counter()
        for i, nb in enumerate(notebooks, 1):
            # Each notebook gets only the parameters its parameters cell declares (papermill warns otherwise).
            # Results go to results/ only when this notebook runs with its defaults (or RESULTS is named):
            # with other parameters, notebook_settings writes them under build/ (changed_parameters).
            given = {k: v for k, v in {"SMOKE": smoke, **parameters}.items() if k in declared[nb]}
            changed = changed_parameters(nb, given)
            if "RESULTS" in declared[nb] and "RESULTS" not in given and not changed:
                given["RESULTS"] = DEMO_RESULTS
            target = out / nb.name
            echo(f"[{i}/{len(notebooks)}] {nb.name} {given} ...", flush=True)
            if changed and "RESULTS" not in given:
                echo(f"    {', '.join(changed)} differ from its defaults: its tables and figures go under build/, "
                     "not results/ (-p RESULTS ../results to replace the committed ones)", flush=True)
            t0 = time.perf_counter()
            try:
                papermill.execute_notebook(str(nb), str(target), parameters=given, kernel_name=KERNEL,
                                           progress_bar=False, cwd=str(nb.parent),
                                           extra_arguments=KERNEL_ARGUMENTS)
            except PapermillExecutionError as e:
                raise NotebookRunError(
                    f"{nb} failed at cell [{e.exec_count}] of its executed copy: {e.ename}: {e.evalue}\n"
                    f"  cell source: {_first_lines(e.source)}\n  the executed copy with the traceback: {target}"
                ) from None
            except Exception as e:  # kernel missing or dead, unreadable notebook, ...
                hint = " (is the 'python3' kernel installed? run `make venv`)" if "kernel" in str(e).lower() else ""
                raise NotebookRunError(f"{nb} could not be executed: {type(e).__name__}: {e}{hint}") from e
            seconds = time.perf_counter() - t0
            done.append((target, seconds))
            echo(f"    ok in {seconds:.1f} s -> {target}", flush=True)
        echo(f"{len(done)} notebook(s) in {time.perf_counter() - start:.1f} s", flush=True)
        return done


def _first_lines(source: str, n: int = 3) -> str:
    lines = (source or "").strip().splitlines()
    return " | ".join(lines[:n]) + (" | ..." if len(lines) > n else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m avmaster_core.results.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the notebooks and their parameters")
    run = sub.add_parser("run", help="execute the notebooks in order")
    for p in (listing, run):
        p.add_argument("--notebooks", type=Path, default=DEFAULT_NOTEBOOKS, help="folder of NN_*.ipynb (default: notebooks)")
        p.add_argument("--only", help="keep notebooks by number (14 or 14_), whole name or glob (comma-separated)")
    run.add_argument("--mode", choices=("smoke", "full"), required=True,
                     help="smoke: SMOKE=True (CPU, synthetic data); full: SMOKE=False (real features)")
    run.add_argument("--out", type=Path, required=True, help="folder for the executed copies, e.g. build/notebooks")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a notebook parameter (repeatable)")
    run.add_argument("--threads", type=AT_LEAST_0, default=0, metavar="N",
                     help="torch CPU threads of each notebook's kernel (default 0 = auto: 1 in smoke mode, whose "
                          "CPU-size models run their small operations fastest on one thread; otherwise OMP_NUM_THREADS "
                          "if set, else torch's default)")
    return parser


def kernel_threads(threads: int, smoke: bool) -> int:
    """The torch threads the kernels get (0: leave torch's default); see --threads."""
    if threads:
        return threads
    return 1 if smoke and "OMP_NUM_THREADS" not in os.environ else 0


@contextlib.contextmanager
def kernel_environment(threads: int):
    """OMP_NUM_THREADS=threads for the kernels started inside (child processes: torch reads it at import),
    restored afterwards; threads 0 changes nothing."""
    before = os.environ.get("OMP_NUM_THREADS")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        notebooks = find_notebooks(args.notebooks, args.only)
        if not notebooks:
            print(f"no notebooks match {args.only!r} in {args.notebooks}", file=sys.stderr)
            return 1
        if args.command == "list":
            for nb in notebooks:
                print(f"{nb.name}  parameters: {', '.join(sorted(declared_parameters(nb))) or '-'}")
            return 0
        run_notebooks(notebooks, args.out, smoke=args.mode == "smoke", threads=args.threads,
                      parameters={name: parse_value(value) for name, value in args.parameter})
    except (NotebookRunError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
