"""The notebooks' parameters, resolved and checked in one place: `notebook_settings`.

Every notebook's settings cell passes each name of its `parameters` cell to `notebook_settings`, so every
parameter is either honoured or refused there, before any work starts, with a `ParameterError` that names
the parameter, what was found and what to do. SMOKE=True replaces what the smoke tier cannot use (the
dataset, its folders, the device) and says so in the printed settings.
"""
from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import plots
from ..core.experiments import EXPERIMENTS
from ..core.options import AT_LEAST_0, AT_LEAST_1, Range
from ..core.run_reads import reset_reads
from ..core.store import FeatureStore
from ..data.annotations import DATASETS, load_annotations
from ..data.synthetic import decoded_scene_accuracy, generate_synthetic
from ..training.engine import DataConfig, TrainConfig
from ..training.run_config import BEST_CHECKPOINT, RUN_TABLE, finished_runs
from ..training.sweep import run_grid
from .paper import FULL_MODEL_RUN, summary_columns

# Every notebook imports this module: show wide tables whole (Table II side by side has 26 columns), so
# neither JupyterLab nor the stored text outputs elide columns with "...".
pd.set_option("display.max_columns", 60, "display.width", 250)

# Where a notebook writes when RESULTS is left empty: the smoke tier (SMOKE=True: run by hand, in
# JupyterLab or under nbval) writes under build/smoke/ so that it never overwrites results/; the full tier
# writes results/. `make demo` passes RESULTS=../results explicitly, so the demo fills results/ with tables
# whose `ours` part is labelled as synthetic. Paths are relative to the notebooks folder, the working
# directory of every notebook.
SMOKE_RESULTS = Path("../build/smoke/results")
FULL_RESULTS = Path("../results")
DEMO_RESULTS = "../results"
# Where a run with non-default parameters writes when RESULTS is left empty (full tier; the smoke tier writes
# SMOKE_RESULTS anyway): never over the committed results/, which hold what the defaults make.
CHANGED_RESULTS = Path("../build/results")
# Parameters that say where things are, not what is computed: changing only these keeps the default RESULTS.
LOCATIONS = {"SMOKE", "RESULTS", "RUNS", "ROOT", "STORE", "DATA", "DEVICE", "VIDEOS", "EXTRACT_STORE"}
PARAMETER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# The finished synthetic runs shipped with the repository (CPU-sized models, several seeds), read by the
# smoke tier's table and figure notebooks; the synthetic benchmark is regenerated under SMOKE_DATA.
SMOKE_RUNS = Path("../results/runs/synthetic")
SMOKE_DATA = Path("../data/synthetic")
# The recipe of the shipped synthetic runs (results/synthetic.md); new smoke training uses it too.
SMOKE_RECIPE = dict(lr=1e-3, batch_size=32, progress=False, checkpoint_every_steps=0)
DEFAULT_EPOCHS = {True: 1, False: 30}  # new training when EPOCHS = 0: smoke tier, full tier
# Questions per split of new training when LIMIT = 0 (03_training): the smoke tier's run takes 20 steps of
# batch 32 per epoch (seconds on one CPU thread); the full tier reads every question.
SMOKE_LIMIT = 640
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# What each notebook needs before it can start, checked in its settings cell:
#   data: the dataset's folder; runs: a finished run of EXPERIMENT; full: a finished run of the full model.
#   rows: a table whose EPOCHS > 0 trains its rows first (`train_rows`).
# smoke_runs: where the smoke tier reads runs when RUNS is empty, if not SMOKE_RUNS (Fig. 5: the
# decorrelated benchmark, where removing a modality can hurt; results/synthetic.md).
NEEDS = {
    "10_table2_music_avqa": {"rows"}, "14_table7_components": {"rows"}, "15_table8_losses": {"rows"},
    "16_table9_template_length": {"rows"}, "17_table10_weight_sharing": {"rows"},
    "00_quick_start": {"data", "runs"}, "02_model": {"data"}, "03_training": {"data"},
    "04_evaluation": {"data", "runs"},
    "19_table12_13_inference_variants": {"data", "full"}, "20_fig4_segment_length": {"data", "full"},
    "22_fig6_focus_steps": {"data", "full"}, "24_fig8_word_attention": {"data", "full", "question"},
    "30_presets": {"data"}, "31_ask_your_video": {"runs"}, "32_explore_a_question": {"data", "runs", "question"},
}
# Tables III, IV and XI: rows are other benchmarks or encoders, which the synthetic benchmark cannot stand in
# for, so even the smoke tier reads the real runs (`avmaster reproduce`'s layout) and says which are missing.
# Table V (AVQA, multiple choice): the smoke tier reads the synthetic benchmark's multiple-choice variant.
SMOKE_RUNS_OF = {"21_fig5_input_modalities": Path("../results/runs/synthetic_decorrelated"),
                 "13_table5_avqa": Path("../results/runs/synthetic_mc"),
                 **{name: FULL_RESULTS / "runs" for name in ("11_table3_music_avqa_r", "12_table4_music_avqa_v2",
                                                             "18_table11_feature_extractors")}}


def notebooks_folder() -> Path:
    """The repository's notebooks/ folder, found from this package's own location (a checkout or an editable
    install), else the working directory when it holds the notebooks (JupyterLab's, for a copied notebook)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and any((parent / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            return parent / "notebooks"
    if any(Path.cwd().glob("[0-9][0-9]_*.ipynb")):
        return Path.cwd()
    raise FileNotFoundError(f"cannot find the notebooks folder: the package at {Path(__file__).parent} is not in a "
                            "checkout of the repository; run the notebook from its own folder")


def work_in_notebooks_folder() -> None:
    """Every path of a notebook (its defaults, what it writes, the parameters given) is relative to notebooks/,
    as in JupyterLab: a kernel started elsewhere (`papermill notebooks/03_training.ipynb out.ipynb` from the
    repository root or any folder) moves there first, so that nothing is read or written outside the repository
    but where the parameters point."""
    folder = notebooks_folder()
    if Path.cwd().resolve() != folder.resolve():
        print(f"working folder: {folder} (was {Path.cwd()}; relative paths are read from notebooks/)")
        os.chdir(folder)

# The smoke tier's variant benchmarks, by the name of their runs folder: (--dataset, data folder, the command
# that makes it; results/synthetic.md sections 5-6).
SMOKE_BENCHMARKS = {
    "synthetic_decorrelated": ("synthetic", "data/synthetic_decorrelated", "avmaster synth --out "
                               "data/synthetic_decorrelated --visible-prob 0.5 --silent-prob 0.6 && "),
    "synthetic_mc": ("synthetic_mc", "data/synthetic_mc", "avmaster synth --choices 4 --out data/synthetic_mc && "),
}


class ParameterError(ValueError):
    """A notebook parameter that cannot be honoured; the message says which, what was found, what to do."""

    def __init__(self, name: str, found, remedy: str):
        super().__init__(f"{name} = {found!r}: {remedy}")


@dataclass(frozen=True)
class NotebookSettings:
    """What a notebook works on, resolved from its flat `parameters` cell (see `notebook_settings`)."""

    dataset: str
    root: Path                 # annotation files (and features.h5 unless `store` is set)
    store: Path | None         # HDF5 feature store; None = <root>/features.h5
    experiment: str            # a name of avmaster_core.core.experiments.EXPERIMENTS (= run folder)
    preset: str                # "official" (the released code) or "paper" (Section III as written)
    size: str                  # model size (config.SIZES): "cpu" in the smoke tier, "full" otherwise
    seeds: tuple[int, ...] | None   # None = every seed found
    epochs: int                # epochs of new training
    device: str
    smoke: bool
    results: Path              # tables and figures are written here (figures under figures/)
    runs_root: Path            # finished runs are read from here (<runs_root>[/paper]/<experiment>/<seed>/)
    train_first: bool = False  # table notebooks: EPOCHS > 0 trains each row into new runs before reading them
    changes: tuple[str, ...] = ()   # what SMOKE replaced, printed with the settings
    extra: dict = field(default_factory=dict)   # the notebook's own parameters, checked (QUESTION, LENGTHS, ...)
    notebook: str = ""         # the notebook's name (NEEDS says what it needs)
    trains: bool = True        # whether the notebook declares EPOCHS (else the epochs are not printed)

    def __getattr__(self, name):
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"NotebookSettings has no {name!r}; this notebook's own parameters: {sorted(extra)}")

    @property
    def runs(self) -> Path:
        """Finished runs of this preset: the paper preset's runs live under `paper/` (sweep.run_name)."""
        base = self.train_dir if self.train_first else self.runs_root
        return base / "paper" if self.preset == "paper" else base

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def ours_label(self) -> str:
        """The `source` label of our numbers in the side-by-side tables: says when they are synthetic, and when
        they are the decorrelated synthetic variant (Fig. 5's smoke runs)."""
        if self.dataset != "synthetic":
            return "ours"
        return "ours (synthetic, decorrelated)" if self.runs_root.name == "synthetic_decorrelated" else "ours (synthetic)"

    @property
    def new_runs(self) -> Path:
        """Where a notebook that trains writes its runs: `<results>/runs/smoke` in the smoke tier, never the
        shipped synthetic runs (whose recipe differs); `<results>/runs` otherwise."""
        return self.results / "runs" / "smoke" if self.smoke else self.results / "runs"

    @property
    def train_dir(self) -> Path:
        """Where new training of this notebook goes: one folder per epoch count, so that a rerun with another
        EPOCHS starts its own runs instead of clashing with a finished run's configuration."""
        limit = self.question_limit
        return self.new_runs / (f"epochs{self.epochs}" + (f"_questions{limit}" if limit else ""))

    @property
    def question_limit(self) -> int | None:
        """DataConfig.limit of new training, from a notebook's LIMIT (0: every question, SMOKE_LIMIT in the
        smoke tier); None for a notebook without LIMIT."""
        if "LIMIT" not in self.extra:
            return None
        return self.extra["LIMIT"] or (SMOKE_LIMIT if self.smoke else None)

    @property
    def run_name(self) -> str:
        """The run folder name of EXPERIMENT in this preset (sweep.run_name): paper-preset runs under paper/."""
        return f"paper/{self.experiment}" if self.preset == "paper" else self.experiment

    def train_config(self, seed: int | None = None, **changes):
        """The training recipe of this tier: the authors' (engine.TrainConfig defaults) with this notebook's
        epochs and device; the smoke tier uses the recipe of the shipped synthetic runs (SMOKE_RECIPE)."""
        seed = seed if seed is not None else (self.seeds[0] if self.seeds else 1)
        smoke = SMOKE_RECIPE if self.smoke else {}
        return TrainConfig(**{"epochs": self.epochs, "seed": seed, "device": self.device, **smoke, **changes})

    def data_config(self, **changes):
        """engine.DataConfig of this notebook's dataset, annotation root and feature store (and LIMIT)."""
        return DataConfig(**{"dataset": self.dataset, "root": str(self.root),
                             "store": str(self.store) if self.store else None, "limit": self.question_limit,
                             **changes})

    def ensure_data(self) -> Path:
        """The feature store, after generating the synthetic benchmark if this is a smoke run (seconds; an
        existing copy made with the same parameters is reused). Real data must already be there."""
        if self.dataset == "synthetic":
            generate_synthetic(self.root)
        store = self.store or self.root / "features.h5"
        if not store.is_file():
            raise FileNotFoundError(f"feature store {store} not found: extract features first "
                                    f"(notebooks/01_features.ipynb, `avmaster extract`) or set STORE")
        return store

    def sweep_command(self, experiments) -> str:
        """The command that trains the given experiments into this notebook's runs folder."""
        seeds = " ".join(map(str, self.seeds or (1, 2, 3)))
        # the smoke tier's runs of a variant benchmark (SMOKE_RUNS_OF) are trained on that benchmark
        dataset, data, make = SMOKE_BENCHMARKS.get(self.runs_root.name, ("synthetic", SMOKE_DATA.as_posix(), ""))
        tier = (f"--size cpu --dataset {dataset} --root {data.removeprefix('../')} --device cpu "
                "--epochs 10 --lr 1e-3 --batch-size 32") if self.smoke else \
            f"--dataset {self.dataset} --root {self.root.as_posix().removeprefix('../')}"
        make = make if self.smoke else ""
        preset = " --preset paper" if self.preset == "paper" else ""
        out = self.runs_root.as_posix().removeprefix("../")
        return (f"{make}OMP_NUM_THREADS=1 avmaster sweep --experiments {' '.join(experiments)} --seeds {seeds}{preset} "
                f"{tier} --out {out}")

    def train_rows(self, experiments) -> Path:
        """Table notebooks with EPOCHS > 0: train every experiment (SEEDS, default seed 1) for EPOCHS epochs
        into `new_runs/epochs<N>` (resumable; finished runs are reused) and return the folder the table reads.
        With EPOCHS = 0 nothing is trained and the finished runs in RUNS are read."""
        if not self.train_first:
            return self.runs
        self.ensure_data()
        experiments = list(dict.fromkeys(experiments))
        print(f"training {len(experiments)} experiment(s) x seeds {list(self.seeds or (1,))} for {self.epochs} "
              f"epoch(s) into {self.runs}", flush=True)
        run_grid(experiments, list(self.seeds or (1,)), preset=self.preset, size=self.size,
                 train_cfg=self.train_config(), data_cfg=self.data_config(),
                 out_dir=self.train_dir, progress=False)
        return self.runs

    def save(self, obj, filename: str, *, complete: bool = True, missing=(), command: str | None = None):
        """Write a table (.csv, rounded) or a figure (.png) under RESULTS (figures/ for figures; under
        `train_dir` when this notebook trained its rows) and return the path. With complete=False (no run of ours to show) nothing is written, so a table made by an
        earlier run is never replaced by empty columns: the missing runs and the command that makes them are
        printed instead (`command`, else the `avmaster sweep` line of the missing experiments)."""
        if not complete:
            print(f"{filename} not written: no run of {', '.join(missing) or 'ours'} in {self.runs}; make them "
                  f"with\n  {command or self.sweep_command(missing)}")
            return None
        # Tables of freshly trained rows (EPOCHS > 0) go beside those runs, never over the shipped results.
        base = self.train_dir if self.train_first else self.results
        if filename.endswith(".csv"):
            return plots.save_table(obj, base / filename)
        return plots.save_figure(obj, base / "figures" / filename)

    def references(self, metrics=("A-QA", "V-QA", "AV-QA", "Avg")) -> dict:
        """Reference levels for our panels: the question-only model of RUNS (`baseline/question_only`, per
        metric, mean over seeds) and, on the default synthetic benchmark, the decoded-scene reader (Avg)."""
        levels = {}
        runs = finished_runs(self.runs_root, "baseline/question_only", self.seeds)
        if runs:
            mean = summary_columns(pd.concat(list(runs.values()))).mean()
            levels["question-only model"] = {m: float(mean[m]) for m in metrics if m in mean}
        if self.dataset == "synthetic" and self.runs_root == SMOKE_RUNS:
            self.ensure_data()
            levels["scene reader"] = {"Avg": 100 * decoded_scene_accuracy(self.root)["overall"]}
        return levels

    def __str__(self) -> str:
        fields = {"dataset": self.dataset, "root": self.root, "store": self.store or self.root / "features.h5",
                  "experiment": self.experiment, "preset": self.preset, "size": self.size,
                  "seeds": "all found" if self.seeds is None else ",".join(map(str, self.seeds)),
                  "epochs": self.epochs if self.train_first or "rows" not in NEEDS.get(self.notebook, ())
                  else "0 (the finished runs are read)", "device": self.device, "smoke": self.smoke, "runs (read)": self.runs,
                  "results (written)": self.train_dir if self.train_first else self.results, **{k.lower(): v for k, v in self.extra.items()}}
        lines = [f"{k:>18}: {v}" for k, v in fields.items() if k != "epochs" or self.trains]
        return "\n".join([*self.changes, *lines])


def papermill_module():
    """papermill, imported on first use: an optional dependency (the `notebooks` extra) that takes a second to
    import, so that the command line and the rest of the package work without it. The one place the package
    imports it (notebooks.py runs the notebooks with it)."""
    import papermill.exceptions

    return papermill


def notebook_defaults(notebook: str | Path) -> dict | None:
    """The values of the notebook's `parameters` cell as stored: a path to an .ipynb, or a notebook name looked
    up in the working directory (a notebook's own folder) and else the repository's notebooks/; None when the
    file is not found."""
    papermill = papermill_module()
    here = Path(notebook if str(notebook).endswith(".ipynb") else f"{notebook}.ipynb")
    candidates = [here] + [parent / "notebooks" / here.name for parent in Path(__file__).resolve().parents]
    path = next((c for c in candidates if str(notebook) and c.is_file()), None)
    if path is None:
        return None
    return {name: ast.literal_eval(p["default"]) for name, p in papermill.inspect_notebook(str(path)).items()}


def changed_parameters(notebook: str | Path, values: dict) -> list[str]:
    """The names among `values` that change what the notebook computes (not LOCATIONS) and differ from the
    notebook's stored defaults: a run with any of them writes under build/ unless RESULTS is named."""
    defaults = notebook_defaults(notebook) or {}
    return sorted(n for n, v in values.items()
                  if n in defaults and n not in LOCATIONS and v is not None and v != defaults[n])


def _check_declared(notebook: str, scope: dict | None, defaults: dict | None) -> None:
    """Refuse a parameter-like name (upper case, a scalar value) in the notebook's globals that its parameters
    cell does not declare: papermill injects `-p SEED 2` as a new line, which would otherwise be ignored in
    silence."""
    if scope is None or defaults is None:
        return
    injected = (str, int, float, bool, type(None))  # what `-p NAME VALUE` gives; an imported constant is not
    for name in sorted(n for n, v in scope.items()
                       if PARAMETER_NAME.match(n) and n not in defaults and isinstance(v, injected)):
        close = difflib.get_close_matches(name, list(defaults), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ParameterError(name, scope[name], f"{notebook} declares no such parameter; {hint}its parameters: "
                                                f"{', '.join(defaults)}")


def _check_choice(name: str, value, choices, remedy: str):
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ParameterError(name, value, f"not one of {len(choices)} choices{hint}; {remedy}")
    return value


# The numbers of the notebooks' numeric parameters (options.Range, as for the command-line options).
RANGES = {"EPOCHS": AT_LEAST_0, "SEEDS": AT_LEAST_0, "SECONDS": AT_LEAST_1, "QUESTIONS": AT_LEAST_1,
          "BATCH": AT_LEAST_1, "STEPS": AT_LEAST_1, "FAILURES": AT_LEAST_1, "LIMIT": AT_LEAST_0,
          "LENGTHS": AT_LEAST_1}


def _number(name: str, value, remedy: str, rng: Range | None = None):
    """`value` if RANGES[name] (or `rng`) allows it, else a ParameterError saying what is allowed and `remedy`."""
    problem = (rng or RANGES[name]).problem(value)
    if problem:
        raise ParameterError(name, value, f"{problem}; {remedy}")
    return value


def _int_list(name: str, text, example: str, empty: str) -> tuple[int, ...]:
    """Comma-separated whole numbers in RANGES[name], each once (`-p SEEDS 2,3` arrives as the tuple (2, 3))."""
    if isinstance(text, (tuple, list)):
        text = ",".join(map(str, text))
    parts = [s for s in str(text).replace(" ", "").strip("()[]").split(",") if s]
    remedy = f"give comma-separated whole numbers such as \"{example}\", each once, or \"\" for {empty}"
    if not all(p.isdigit() and RANGES[name].problem(int(p)) is None for p in parts) or len(set(parts)) < len(parts):
        raise ParameterError(name, text, f"{remedy} ({RANGES[name].allowed()} each)")
    return tuple(int(p) for p in parts)


def _seeds(text) -> tuple[int, ...] | None:
    return _int_list("SEEDS", text, "1,2,3", "every finished seed") or None


def _epochs(value, smoke: bool) -> int:
    _number("EPOCHS", value, f"0 is the tier's default, {DEFAULT_EPOCHS[True]} with SMOKE, "
                             f"{DEFAULT_EPOCHS[False]} without")
    return value or DEFAULT_EPOCHS[smoke]


def _smoke_changes(given: dict) -> list[str]:
    """What SMOKE=True replaces among the parameters the notebook declared, as printable lines."""
    replaced = {"DATASET": "synthetic", "ROOT": SMOKE_DATA.as_posix(), "STORE": "",
                "DEVICE": "cpu"}
    return [f"SMOKE changes {name} {given[name]!r} -> {value!r} (SMOKE: the bundled synthetic benchmark on CPU; "
            "SMOKE=False honours it)" for name, value in replaced.items()
            if given.get(name) is not None and given[name] != value]


def notebook_settings(NOTEBOOK: str = "", *, DATASET: str | None = None, ROOT: str | None = None,
                      STORE: str | None = None, EXPERIMENT: str = "default", PRESET: str = "official",
                      SEEDS: str = "", EPOCHS: int | None = None, DEVICE: str | None = None, SMOKE: bool = True,
                      RESULTS: str = "", RUNS: str = "", scope: dict | None = None, **extra) -> NotebookSettings:
    """The notebooks' one-line configuration: every parameter of a notebook's `parameters` cell, checked.

    SMOKE=True: the bundled synthetic benchmark on CPU with CPU-sized models (DATASET, ROOT, STORE and
    DEVICE are replaced, and the printed settings say so), the shipped synthetic runs, new training of
    EPOCHS (0: 1 epoch), results under build/smoke/results unless RESULTS is given. SMOKE=False: real
    features, EPOCHS 0 = 30, results/ (RESULTS, RUNS). PRESET "paper" reads the runs under RUNS/paper/.
    In the table notebooks (NEEDS "rows") EPOCHS > 0 means "train the table's rows first" (`train_rows`).
    With parameters that differ from the notebook's defaults (`changed_parameters`) and RESULTS empty, the
    full tier writes CHANGED_RESULTS (build/results), never the committed results/. `scope` (the settings
    cell passes `globals()`) lets an injected name the notebook does not declare be refused.
    Raises ParameterError naming the parameter, the value found and what to do.
    """
    work_in_notebooks_folder()
    reset_reads()  # the tables this notebook writes list the runs it reads from here on
    if not isinstance(SMOKE, bool):
        raise ParameterError("SMOKE", SMOKE, "use True (synthetic benchmark, CPU) or False (real features)")
    _check_choice("PRESET", PRESET, ("official", "paper"),
                  "use 'official' (the released code) or 'paper' (Section III as written)")
    _check_choice("EXPERIMENT", EXPERIMENT, list(EXPERIMENTS),
                  "use a name of avmaster_core.core.experiments.EXPERIMENTS, e.g. 'default' or 'table7/wo_tdpp'")
    seeds, epochs = _seeds(SEEDS), _epochs(EPOCHS or 0, SMOKE)
    device = DEVICE or "auto"
    if not DEVICE_PATTERN.match(str(device)):
        raise ParameterError("DEVICE", DEVICE, "use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    given = {"DATASET": DATASET, "ROOT": ROOT, "STORE": STORE, "DEVICE": DEVICE}
    changes = _smoke_changes(given) if SMOKE else []
    dataset = "synthetic" if SMOKE else _check_choice(
        "DATASET", DATASET or "music_avqa", [d for d in DATASETS if d != "synthetic"],
        "use one of the real benchmarks (the synthetic one is SMOKE=True)")
    root = SMOKE_DATA if SMOKE else Path(ROOT or f"../data/{dataset}")
    defaults = notebook_defaults(NOTEBOOK)
    _check_declared(NOTEBOOK, scope, defaults)
    values = {"DATASET": DATASET, "EXPERIMENT": EXPERIMENT, "PRESET": PRESET, "SEEDS": SEEDS, "EPOCHS": EPOCHS,
              **extra}
    changed = changed_parameters(NOTEBOOK, values) if defaults else []
    if changed and not SMOKE and not RESULTS:
        changes.append(f"parameters change RESULTS '' -> {CHANGED_RESULTS.as_posix()!r} ({', '.join(changed)} differ from this "
                       "notebook's defaults; name RESULTS to write elsewhere, e.g. ../results)")
    results = Path(RESULTS) if RESULTS else SMOKE_RESULTS if SMOKE else CHANGED_RESULTS if changed else FULL_RESULTS
    runs = Path(RUNS) if RUNS else SMOKE_RUNS_OF.get(NOTEBOOK, SMOKE_RUNS) if SMOKE else \
        (Path(RESULTS) if RESULTS else FULL_RESULTS) / "runs"   # changed parameters still read results/runs
    settings = NotebookSettings(dataset, root, None if SMOKE or not STORE else Path(STORE), EXPERIMENT, PRESET,
                                "cpu" if SMOKE else "full", seeds, epochs, "cpu" if SMOKE else device, SMOKE,
                                results, runs, bool("rows" in NEEDS.get(NOTEBOOK, ()) and EPOCHS),
                                tuple(changes), dict(extra), NOTEBOOK, EPOCHS is not None)
    _check_needs(settings, NEEDS.get(NOTEBOOK, set()))
    _check_extra(settings)
    if "question" in NEEDS.get(NOTEBOOK, ()):
        _check_question(settings)
    return settings


def _available(runs: Path) -> str:
    """The experiments with a finished run under `runs` (the paper preset's own folder excluded), for messages."""
    folders = {p.parent.parent.relative_to(runs).as_posix() for p in runs.glob("**/test_table.csv")} \
        if runs.is_dir() else set()
    return ", ".join(sorted(f for f in folders if not f.startswith("paper/"))[:12]) or "none"


def _check_needs(settings: NotebookSettings, needs: set) -> None:
    """Refuse, before any work, a notebook whose data or runs are not there."""
    if ("data" in needs or settings.train_first) and not settings.smoke and not settings.root.is_dir():
        raise ParameterError("ROOT", str(settings.root), f"no such folder; fetch the annotations with "
                             f"`avmaster data fetch {settings.dataset}` or point ROOT at them")
    if "rows" in needs and not settings.train_first:
        _check_table_runs(settings)
    for need, experiment, name in (("runs", settings.experiment, "EXPERIMENT"), ("full", FULL_MODEL_RUN, "SEEDS")):
        if need not in needs or settings.extra.get("CHECKPOINT"):
            continue
        finished = finished_runs(settings.runs, experiment, settings.seeds)
        with_weights = [s for s in finished if (settings.runs / experiment / str(s) / BEST_CHECKPOINT).is_file()]
        if with_weights:
            continue
        if finished:  # the small files are committed, the checkpoints only for the full model (.gitignore)
            raise ParameterError(name, experiment if name == "EXPERIMENT" else ",".join(map(str, settings.seeds or ())),
                                 f"the finished runs of {experiment!r} in {settings.runs} keep no checkpoint "
                                 "(best.pt), which this notebook loads; choose an experiment whose runs have one "
                                 f"(the shipped synthetic runs: {FULL_MODEL_RUN!r}) or retrain it: "
                                 f"{settings.sweep_command([experiment])}")
        found = sorted(finished_runs(settings.runs, experiment))
        value = settings.experiment if name == "EXPERIMENT" and not found else \
            ",".join(map(str, settings.seeds or ()))
        what = f"{experiment!r} has finished seeds {found} in {settings.runs}; choose among them" if found else \
            (f"no finished run of {experiment!r} in {settings.runs} (experiments with runs there: "
             f"{_available(settings.runs)}); choose one of those or train it: "
             f"{settings.sweep_command([experiment])}")
        raise ParameterError("SEEDS" if found else name, value, what)


def _check_table_runs(settings: NotebookSettings) -> None:
    """A table notebook that reads finished runs (EPOCHS = 0): refuse a seed no run has, and, without SMOKE,
    a RUNS folder with no finished run at all (the table would be the paper's numbers beside NaN)."""
    found = sorted({int(t.parent.name) for e in EXPERIMENTS for t in (settings.runs / e).glob(f"*/{RUN_TABLE}")
                    if t.parent.name.isdigit()})
    missing = [s for s in settings.seeds or () if s not in found]
    if missing:
        raise ParameterError("SEEDS", ",".join(map(str, settings.seeds)),
                             f"no finished run in {settings.runs} has seed(s) {missing} (seeds found: {found}); "
                             "choose among those, or set EPOCHS > 0 to train the rows with these seeds")
    if not found and not settings.smoke:
        raise ParameterError("RUNS", str(settings.runs), "no finished run there (no <experiment>/<seed>/"
                             "test_table.csv of an experiment); make them with `avmaster reproduce run`, point RUNS at them, or set "
                             "EPOCHS > 0 with ROOT at your features to train the rows first")


def _check_extra(settings: NotebookSettings) -> None:
    """The notebook-specific parameters: files that must exist, numbers that must parse."""
    extra = settings.extra
    for name in ("VIDEO", "CHECKPOINT"):
        if extra.get(name) and not Path(extra[name]).is_file():
            raise ParameterError(name, extra[name], "no such file; give a path relative to notebooks/ or "
                                                    "absolute, or \"\" for the default")
    if extra.get("VIDEOS") and not settings.smoke and not Path(extra["VIDEOS"]).is_dir():
        raise ParameterError("VIDEOS", extra["VIDEOS"], "no such folder of videos")
    if "SECONDS" in extra:
        _number("SECONDS", extra["SECONDS"], "the number of one-second segments")
    if "QUESTIONS" in extra:
        _number("QUESTIONS", extra["QUESTIONS"], "how many distinct questions the picker lists")
    for name, what in (("BATCH", "questions in the model walk-through's batch"),
                       ("STEPS", "optimiser steps of the training loop written out"),
                       ("FAILURES", "wrong answers shown"),
                       ("LIMIT", f"questions per split of new training, 0 for all ({SMOKE_LIMIT} with SMOKE)")):
        if name in extra:
            _number(name, extra[name], what)
    if "LENGTHS" in extra:
        parts = _int_list("LENGTHS", extra["LENGTHS"], "2,4,6", "the default")
        stored = _stored_length(settings) if parts else None
        if stored is not None and max(parts) > stored:
            raise ParameterError("LENGTHS", extra["LENGTHS"], f"the videos in {settings.data_config().store_path()} "
                                 f"have {stored} segments and this curve cuts them shorter, never longer: give "
                                 f"segment counts from 1 to {stored}")


def _stored_length(settings: NotebookSettings) -> int | None:
    """The number of segments of the first stored video (None when there is no store to read)."""
    if settings.smoke:
        settings.ensure_data()
    path = Path(settings.data_config().store_path())
    if not path.is_file():
        return None
    with FeatureStore(path) as store:
        keys = store.keys("visual")
        return int(store.file[f"visual/{keys[0]}"].shape[0]) if keys else None


def _check_question(settings: NotebookSettings) -> None:
    if settings.smoke:
        settings.ensure_data()
    records = load_annotations(settings.dataset, "test", settings.root)
    wanted = str(settings.extra["QUESTION"]).lower().rstrip("?").strip()
    found = records[records["question"].str.lower().str.rstrip("?").str.strip() == wanted]
    if found.empty:
        examples = "; ".join(records["question"].drop_duplicates().head(3))
        raise ParameterError("QUESTION", settings.extra["QUESTION"],
                             f"no test question of {settings.dataset} reads so; use one of its test questions, "
                             f"e.g. {examples}")
    settings.extra["question_id"] = int(found["question_id"].iloc[0])

