"""Run the project's notebooks headless, in order, with papermill.

    python -m avmaster_core.notebooks list
    python -m avmaster_core.notebooks run --mode smoke --out build/notebooks [-p EPOCHS 2] [--only 1*]

`run` executes notebooks/NN_*.ipynb in name order with the "python3" kernel (which `make venv` installs
into the virtualenv), each in the notebooks folder (as JupyterLab would), with SMOKE=True (`--mode
smoke`: CPU, bundled synthetic data and the shipped synthetic runs, minutes; `make demo`) or SMOKE=False
(`--mode full`: real features, a GPU; `make reproduce`). Both write tables and figures into results/
(RESULTS=../results; the smoke tables label our numbers "ours (synthetic)"); a notebook run by hand or by
nbval in SMOKE mode writes into build/smoke/results instead (see `notebook_settings`).
`-p NAME VALUE` overrides a parameter of the notebooks that declare it in their `parameters` cell; the
value is read as a Python literal when it is one (2, 0.5, False, "x") and as text otherwise (cuda).
Executed copies go to --out (never into notebooks/). The first failing notebook stops the run with
its name, the failing cell and the error; its executed copy holds the full traceback.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import warnings

# Notebooks import this module first: tqdm.auto's "IProgress not found" warning (no ipywidgets) would land in
# the stderr of checked cells and is no news to a reader.
warnings.filterwarnings("ignore", message="IProgress not found")

KERNEL = "python3"
# The kernel's own start-up chatter (e.g. "running over TCP without encryption") is not the user's news.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
DEFAULT_NOTEBOOKS = Path("notebooks")


# Where a notebook writes when RESULTS is left empty: the smoke tier (SMOKE=True: run by hand, in
# JupyterLab or under nbval) writes under build/smoke/ so that it never overwrites results/; the full tier
# writes results/. `make demo` (run_notebooks with smoke=True) passes RESULTS=../results explicitly, so the
# demo fills results/ with tables whose `ours` part is labelled as synthetic. Paths are relative to the
# notebooks folder, the working directory of every notebook.
SMOKE_RESULTS = Path("../build/smoke/results")
FULL_RESULTS = Path("../results")
DEMO_RESULTS = "../results"
# The finished synthetic runs shipped with the repository (CPU-sized models, several seeds), read by the
# smoke tier's table and figure notebooks; the synthetic benchmark they were trained on is regenerated
# (deterministically, in seconds) under SMOKE_DATA.
SMOKE_RUNS = Path("../results/runs/synthetic")
SMOKE_DATA = Path("../data/synthetic")


@dataclass(frozen=True)
class NotebookSettings:
    """What a notebook works on, resolved from its flat `parameters` cell (see `notebook_settings`)."""

    dataset: str
    root: Path                 # annotation files (and features.h5 unless `store` is set)
    store: Path | None         # HDF5 feature store; None = <root>/features.h5
    experiment: str            # a name of avmaster_core.config.EXPERIMENTS (= run folder)
    preset: str                # "official" (the released code) or "paper" (Section III as written)
    size: str                  # model size (config.SIZES): "cpu" in the smoke tier, "full" otherwise
    seeds: tuple[int, ...] | None   # None = every seed found
    epochs: int
    device: str
    smoke: bool
    results: Path              # tables and figures are written here (figures under figures/)
    runs: Path                 # finished runs are read from here (<runs>/<experiment>/<seed>/)

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def ours_label(self) -> str:
        """The `source` label of our numbers in the side-by-side tables: says when they are synthetic."""
        return "ours (synthetic)" if self.dataset == "synthetic" else "ours"

    @property
    def new_runs(self) -> Path:
        """Where a notebook that trains writes its runs: `<results>/runs/smoke` in the smoke tier, never the
        shipped synthetic runs (whose recipe differs); `<results>/runs` otherwise."""
        return self.results / "runs" / "smoke" if self.smoke else self.results / "runs"

    def train_config(self, seed: int | None = None, **changes):
        """The training recipe of this tier: the authors' (engine.TrainConfig defaults) with this notebook's
        epochs and device; the smoke tier uses the recipe of the shipped synthetic runs (lr 1e-3, batch 32;
        see avmaster_core.sweep) without progress bars."""
        from .engine import TrainConfig

        seed = seed if seed is not None else (self.seeds[0] if self.seeds else 1)
        smoke = dict(lr=1e-3, batch_size=32, progress=False, checkpoint_every_steps=0) if self.smoke else {}
        return TrainConfig(**{"epochs": self.epochs, "seed": seed, "device": self.device, **smoke, **changes})

    def data_config(self, **changes):
        """engine.DataConfig of this notebook's dataset, annotation root and feature store."""
        from .engine import DataConfig

        return DataConfig(**{"dataset": self.dataset, "root": str(self.root),
                             "store": str(self.store) if self.store else None, **changes})

    def ensure_data(self) -> Path:
        """The feature store, after generating the synthetic benchmark if this is a smoke run (seconds; an
        existing copy made with the same parameters is reused). Real data must already be there."""
        if self.dataset == "synthetic":
            from .synthetic import generate_synthetic

            generate_synthetic(self.root)
        store = self.store or self.root / "features.h5"
        if not store.is_file():
            raise FileNotFoundError(f"feature store {store} not found: extract features first "
                                    f"(notebooks/01_features.ipynb, `avmaster extract`) or set STORE")
        return store

    def __str__(self) -> str:
        fields = {"dataset": self.dataset, "root": self.root, "store": self.store or self.root / "features.h5",
                  "experiment": self.experiment, "preset": self.preset, "size": self.size,
                  "seeds": "all found" if self.seeds is None else ",".join(map(str, self.seeds)),
                  "epochs": self.epochs, "device": self.device, "smoke": self.smoke, "runs (read)": self.runs,
                  "results (written)": self.results}
        return "\n".join(f"{k:>18}: {v}" for k, v in fields.items())


def notebook_settings(DATASET: str = "music_avqa", ROOT: str = "../data/music_avqa", STORE: str = "",
                      EXPERIMENT: str = "default", PRESET: str = "official", SEEDS: str = "", EPOCHS: int = 30,
                      DEVICE: str = "auto", SMOKE: bool = True, RESULTS: str = "", RUNS: str = "") -> NotebookSettings:
    """The notebooks' one-line configuration. SEEDS: comma-separated ("1,2,3"; "" = all found).

    SMOKE=True switches to the bundled synthetic benchmark, CPU-sized models, at most 1 epoch of new
    training on CPU; it reads the shipped synthetic runs (results/runs/synthetic) and writes under
    build/smoke/results unless RESULTS is given. SMOKE=False reads and writes results/ (RESULTS, RUNS)."""
    if PRESET not in ("official", "paper"):
        raise ValueError(f"PRESET must be 'official' or 'paper', not {PRESET!r}")
    seeds = tuple(int(s) for s in str(SEEDS).replace(" ", "").split(",") if s) or None
    if SMOKE:
        results = Path(RESULTS) if RESULTS else SMOKE_RESULTS
        return NotebookSettings("synthetic", SMOKE_DATA, None, EXPERIMENT, PRESET, "cpu", seeds, min(int(EPOCHS), 1),
                                "cpu", True, results, Path(RUNS) if RUNS else SMOKE_RUNS)
    results = Path(RESULTS) if RESULTS else FULL_RESULTS
    return NotebookSettings(DATASET, Path(ROOT), Path(STORE) if STORE else None, EXPERIMENT, PRESET, "full", seeds,
                            int(EPOCHS), DEVICE, False, results, Path(RUNS) if RUNS else results / "runs")


class NotebookRunError(RuntimeError):
    """A notebook failed; the message names it, the cell and the error."""


def find_notebooks(folder: Path = DEFAULT_NOTEBOOKS, only: str | None = None) -> list[Path]:
    """notebooks/NN_*.ipynb in name order; `only` keeps those whose name matches a glob or contains it
    (comma-separated for several, e.g. "00_*,12")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} not found; run from the repository root or pass --notebooks")
    found = sorted(p for p in folder.glob(NOTEBOOK_GLOB) if p.is_file())
    if only:
        patterns = [p.strip() for p in only.split(",") if p.strip()]
        found = [p for p in found if any(fnmatch.fnmatch(p.name, pat) or pat in p.stem for pat in patterns)]
    return found


def parse_value(text: str):
    """A command-line parameter value: a Python literal where it is one, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def run_notebooks(notebooks: list[Path], out: Path, smoke: bool, parameters: dict | None = None,
                  echo=print) -> list[tuple[Path, float]]:
    """Execute each notebook into `out`; return (executed copy, seconds) per notebook.

    Raises NotebookRunError at the first failure, and ValueError for a parameter that no notebook declares.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

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
    done, start = [], time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        # Each notebook gets only the parameters its parameters cell declares (papermill warns otherwise).
        given = {k: v for k, v in {"SMOKE": smoke, "RESULTS": DEMO_RESULTS, **parameters}.items()
                 if k in declared[nb]}
        target = out / nb.name
        echo(f"[{i}/{len(notebooks)}] {nb.name} {given} ...", flush=True)
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
    parser = argparse.ArgumentParser(prog="python -m avmaster_core.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the notebooks and their parameters")
    run = sub.add_parser("run", help="execute the notebooks in order")
    for p in (listing, run):
        p.add_argument("--notebooks", type=Path, default=DEFAULT_NOTEBOOKS, help="folder of NN_*.ipynb (default: notebooks)")
        p.add_argument("--only", help="keep notebooks matching this glob or substring (comma-separated)")
    run.add_argument("--mode", choices=("smoke", "full"), required=True,
                     help="smoke: SMOKE=True (CPU, synthetic data); full: SMOKE=False (real features)")
    run.add_argument("--out", type=Path, required=True, help="folder for the executed copies, e.g. build/notebooks")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a notebook parameter (repeatable)")
    return parser


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
        run_notebooks(notebooks, args.out, smoke=args.mode == "smoke",
                      parameters={name: parse_value(value) for name, value in args.parameter})
    except (NotebookRunError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
