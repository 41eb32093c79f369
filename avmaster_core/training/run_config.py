"""What a training run is: TrainConfig (how to train), DataConfig (which data), RunResult (what it gave),
and where its folder is.

Each field carries metadata read elsewhere, so that a fact is written once:
    flag, help     its command-line option (show_default=False: the help does not show the default) (engine_cli.add_config_arguments builds `train` and `sweep` from them)
    range          the numbers it allows (options.Range): its option refuses others while parsing, and
                   __post_init__ checks them for Python callers
    free           "always": how a run is executed, not what it computes (device, workers, progress, where the
                   data lives...); such fields may differ between a run and a later request for it.
                   "resume": may differ only when resuming (a finished run resumed with more epochs trains on).
free_fields() lists them; engine's resume check and sweep's finished-run check both use it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import ModelConfig
from ..core.options import AT_LEAST_0, AT_LEAST_1, NON_NEGATIVE, POSITIVE, check_ranges, check_value, field_ranges
from ..core.run_reads import note_run_read
from ..core.store import InUseError, WriterLock, writer_of
from ..data.dataset_registry import DATASET_NAMES
from .precision import PRECISION_HELP, PRECISIONS


def _opt(default, help: str, flag: str | None = None, free: str | None = None, **extra):
    """A dataclass field with its command-line metadata (flag=None: no option)."""
    meta = {"help": help, **extra}
    if flag:
        meta["flag"] = flag
    if free:
        meta["free"] = free
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the authors' released recipe (Adam 1e-4, x0.1 every 8 epochs, 30 epochs,
    batch 64, seed 1)."""

    lr: float = _opt(1e-4, "Adam learning rate", "--lr", range=POSITIVE)
    betas: tuple[float, float] = _opt((0.9, 0.999), "Adam betas (PyTorch defaults, as in the official code)")
    weight_decay: float = _opt(0.0, "Adam weight decay (the official code uses none)", range=NON_NEGATIVE)
    lr_step: int = _opt(8, "StepLR step size in epochs: epochs 1-8 at 1e-4, 9-16 at 1e-5, ...", range=AT_LEAST_1)
    lr_gamma: float = _opt(0.1, "StepLR factor", range=POSITIVE)
    epochs: int = _opt(30, "number of epochs: 30 in the official scripts and in the paper (Sec. IV-A)", "--epochs",
                       free="resume", range=AT_LEAST_1)
    batch_size: int = _opt(64, "training batch size per process, so per GPU under torchrun; official 64, "
                               "--preset paper 32 as Sec. IV-A states", "--batch-size", range=AT_LEAST_1)
    eval_batch_size: int = _opt(64, "evaluation batch size; any size gives the same predictions",
                                free="always", range=AT_LEAST_1)
    seed: int = _opt(1, "random seed of torch, numpy, random and the data order; the official seed is 1", "--seed",
                     range=AT_LEAST_0)
    precision: str = _opt("fp32", PRECISION_HELP, "--precision", choices=PRECISIONS)
    compile: bool = _opt(False, "fast path: on one GPU the train step is captured as a CUDA graph "
                                "(avmaster_core.training.fast), elsewhere torch.compile; falls back to eager with a warning",
                         "--compile", free="always")
    device: str = _opt("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N", "--device", free="always")
    num_workers: int = _opt(0, "DataLoader workers for lazy (not preloaded) features; 0 = main process",
                            "--num-workers", free="always", range=AT_LEAST_0)
    features_on_device: bool = _opt(True, "keep preloaded features on the GPU: batches are built there",
                                    free="always")
    checkpoint_every_steps: int = _opt(200, "also save last.pt every STEPS steps inside an epoch "
                                            "(0 = epoch ends only)", "--checkpoint-every", free="always",
                                       metavar="STEPS", range=AT_LEAST_0)
    eval_split: str | None = _opt("val", "model selection split; none keeps the last epoch (AVQA's train_all variant, "
                                         "docs/avqa.md)", "--eval-split", metavar="SPLIT")
    test_split: str | None = _opt("test", "split scored with the best checkpoint at the end; None skips it")
    find_unused_parameters: bool = _opt(True, "DDP: parts of the model may receive no gradient", free="always")
    progress: bool = _opt(True, "no progress bars", "--no-progress", free="always", negate=True)
    amp: InitVar[bool | None] = None  # the former switch (run folders before --precision): True = "bf16"

    def __post_init__(self, amp):
        if amp is not None:
            object.__setattr__(self, "precision", "bf16" if amp else "fp32")
        check_value("TrainConfig.precision", self.precision, choices=PRECISIONS)
        if self.eval_split in ("none", "None", ""):  # the command line's spelling of "no selection split"
            object.__setattr__(self, "eval_split", None)
        check_ranges(self, field_ranges(TrainConfig))


@dataclass(frozen=True)
class DataConfig:
    """Which data: a benchmark's annotations joined with a feature store."""

    dataset: str = _opt("synthetic", "the benchmark (dataset_registry)", "--dataset", show_default=False,
                        choices=DATASET_NAMES)
    root: str = _opt("data/synthetic", "folder with the dataset's annotation files", "--root", free="always",
                     show_default=False)
    store: str | None = _opt(None, "HDF5 feature store (default: <root>/features.h5)", "--store", free="always")
    train_split: str = _opt("train", "training split (AVQA: train_all = all of train_qa.json, docs/avqa.md)",
                            "--train-split", metavar="SPLIT")
    T: int | None = _opt(None, "segments per video: as stored by default (all equal); an int keeps the first T",
                         "--T", range=AT_LEAST_1)
    pad: str | None = _opt(None, "pad videos shorter than --T (default: error)", "--pad", choices=("zero", "edge"))
    preload: bool = _opt(True, "read all features into memory once (False: per item from HDF5, for huge stores)",
                         free="always")
    limit: int | None = _opt(None, "use only the first N records of each split (smoke runs)", "--limit",
                             range=AT_LEAST_1)

    def __post_init__(self):
        check_ranges(self, field_ranges(DataConfig))

    def store_path(self) -> Path:
        return Path(self.store) if self.store else Path(self.root) / "features.h5"


def free_fields(*, resuming: bool) -> dict[str, set[str]]:
    """{"train": names, "data": names} of the fields that may differ between a run and a request for it:
    the "always" ones, plus the "resume" ones when `resuming`."""
    allowed = {"always", "resume"} if resuming else {"always"}
    return {part: {f.name for f in dataclasses.fields(cls) if f.metadata.get("free") in allowed}
            for part, cls in (("train", TrainConfig), ("data", DataConfig))}


def config_differences(saved: dict, current: dict, free: dict[str, set] | None = None) -> list[str]:
    """"part.field: saved -> current" for every model/train/data field that differs (JSON lists and tuples
    compare equal); `free` names, per part, fields that may differ (they do not change results)."""
    free = free or {}
    diffs = []
    defaults = _field_defaults()
    for part in ("model", "train", "data"):
        a, b = saved.get(part, {}), current.get(part, {})
        if part == "train":
            a, b = current_train_record(a), current_train_record(b)
        for key in sorted(set(a) | set(b)):
            if key in free.get(part, ()):
                continue
            # A field added after a run was saved reads as its default: new switches default to the behaviour
            # that existed before them (e.g. mask_padding=False), so older run folders stay the same runs.
            va = a[key] if key in a else defaults[part].get(key)
            vb = b[key] if key in b else defaults[part].get(key)
            if isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)):
                va, vb = list(va), list(vb)
            if va != vb:
                diffs.append(f"{part}.{key}: {va!r} -> {vb!r}")
    return diffs


def current_train_record(train: dict) -> dict:
    """A saved "train" record in today's field names: the former `amp` switch is `precision`."""
    if "amp" not in train:
        return train
    rest = {k: v for k, v in train.items() if k != "amp"}
    return {"precision": "bf16" if train["amp"] else "fp32", **rest}


def _field_defaults() -> dict[str, dict[str, Any]]:
    """{"model" | "train" | "data": {field: default}} of the three configs a run folder records."""
    return {part: {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
            for part, cls in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig))}


BEST_CHECKPOINT, LAST_CHECKPOINT = "best.pt", "last.pt"  # in every run folder (checkpoint.py: what they hold)


class RunFolder:
    """The files of a run folder `self.run_dir`, spelt once (RunResult and engine.Training have one)."""

    run_dir: Path

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / BEST_CHECKPOINT

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"


@dataclass
class RunResult(RunFolder):
    """What a finished `train` call produced."""

    run_dir: Path
    best_epoch: int
    best_val_acc: float | None
    test_acc: float | None
    table: Any = None                 # pandas DataFrame in the paper's Table II layout (None without a test split)
    history: list[dict] = field(default_factory=list)


    @property
    def predictions_path(self) -> Path:
        return self.run_dir / "predictions.json"

    @property
    def table_path(self) -> Path:
        return self.run_dir / RUN_TABLE


# ------------------------------------------------------------------------------------------------ a run's test table
RUN_TABLE = "test_table.csv"  # what engine.train writes into every run folder (scoring.score's Table II layout)


def read_run_table(run_dir) -> pd.DataFrame:
    """The test table of one finished run folder `<runs>/<experiment>/<seed>`, in the layout its dataset is
    scored in (scoring.score): Table II's two header rows, Table III's three, or one (Tables IV, V)."""
    path = Path(run_dir) / RUN_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished (or was never started)")
    note_run_read(run_dir)  # a table written next will list this run (provenance sidecar)
    lines = path.read_text().splitlines()
    # a multi-level header is written as rows with an empty first cell (the index has no name on them)
    levels = next(i for i, line in enumerate(lines) if not line.startswith(","))
    if levels <= 1:
        return pd.read_csv(path, header=0, index_col=0)
    table = pd.read_csv(path, header=list(range(levels)), index_col=0)
    return table.set_axis(pd.MultiIndex.from_tuples([tuple(c) for c in table.columns]), axis=1)


def finished_runs(runs_dir, experiment: str, seeds=None) -> dict[int, pd.DataFrame]:
    """{seed: test table} of the finished runs of `experiment` (all seeds found, or only `seeds`)."""
    folder = Path(runs_dir) / experiment
    found = sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit() and (p / RUN_TABLE).is_file()) \
        if folder.is_dir() else []
    chosen = found if seeds is None else [s for s in (int(s) for s in seeds) if s in found]
    return {seed: read_run_table(folder / str(seed)) for seed in chosen}


def run_dir_for(out_dir: str | os.PathLike, experiment: str, seed: int) -> Path:
    """`<out_dir>/<experiment>/<seed>`: where a run's files go."""
    return Path(out_dir) / experiment / str(seed)


RUN_LOCK = ".writer.lock"  # in a run folder while a process writes it: "PID N on HOST" (store.WriterLock)


def lock_run_folder(run_dir: Path):
    """Hold the run folder's writer lock (the feature store's WriterLock on `<run_dir>/.writer.lock`) until
    `.release()`: a run folder has one writer. Another process's `train`, `sweep` or `reproduce` into the
    same folder is refused with RunFolderInUseError naming it; a lock left by a killed process is free."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return WriterLock(run_dir, lock_file=run_dir / RUN_LOCK, what="run folder", error=RunFolderInUseError,
                      remedy="wait for that run to finish (or stop it), or choose another --out, --seed or --name")


def run_folder_writer(run_dir: Path) -> str | None:
    """"PID N on HOST" of the process writing `run_dir` now (None: none)."""
    return writer_of(run_dir, run_dir / RUN_LOCK)


class RunFolderInUseError(InUseError):
    """Another process writes this run folder (it holds `<run_dir>/.writer.lock`)."""


def run_name(experiment: str, preset: str = "official") -> str:
    """The run folder name of `experiment` (what `avmaster train` and `sweep` use): paper-preset runs live
    under paper/."""
    return experiment if preset == "official" else f"paper/{experiment}"
