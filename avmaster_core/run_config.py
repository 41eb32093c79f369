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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset_registry import DATASET_NAMES
from .options import AT_LEAST_0, AT_LEAST_1, NON_NEGATIVE, POSITIVE, check_ranges, field_ranges
from .store import InUseError, WriterLock, writer_of


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
    amp: bool = _opt(False, "bf16 mixed precision (the official code trains in fp32)", "--amp")
    compile: bool = _opt(False, "fast path: on one GPU the train step is captured as a CUDA graph "
                                "(avmaster_core.fast), elsewhere torch.compile; falls back to eager with a warning",
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

    def __post_init__(self):
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


def _field_defaults() -> dict[str, dict[str, Any]]:
    """{"model" | "train" | "data": {field: default}} of the three configs a run folder records."""
    from .config import ModelConfig

    return {part: {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
            for part, cls in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig))}


@dataclass
class RunResult:
    """What a finished `train` call produced."""

    run_dir: Path
    best_epoch: int
    best_val_acc: float | None
    test_acc: float | None
    table: Any = None                 # pandas DataFrame in the paper's Table II layout (None without a test split)
    history: list[dict] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / "predictions.json"

    @property
    def table_path(self) -> Path:
        return self.run_dir / "test_table.csv"


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


# ------------------------------------------------------------------------------------------------ a run's data
def load_records(data_cfg: DataConfig, split: str):
    """The record table of one split (annotations.load_annotations), cut to `data_cfg.limit`."""
    from .annotations import load_annotations

    records = load_annotations(data_cfg.dataset, split, data_cfg.root)
    if data_cfg.limit is not None:
        records = records.iloc[: data_cfg.limit].reset_index(drop=True)
    if len(records) == 0:
        raise ValueError(f"split {split!r} of {data_cfg.dataset} under {data_cfg.root} has no records")
    return records


def open_store(data_cfg: DataConfig):
    """The run's FeatureStore, open for reading (a context manager; close it when done)."""
    from .store import FeatureStore

    return FeatureStore(data_cfg.store_path(), "r")


def make_dataset(records, store, data_cfg: DataConfig, *, negatives: bool = False, seed: int = 0):
    """An AVQADataset; it checks up front that every record has its features (MissingFeatureError otherwise)."""
    from .dataset import AVQADataset

    return AVQADataset(records, store, with_negatives=negatives, T=data_cfg.T, seed=seed,
                       preload=data_cfg.preload, pad=data_cfg.pad)


def run_name(experiment: str, preset: str = "official") -> str:
    """The run folder name of `experiment` (what `avmaster train` and `sweep` use): paper-preset runs live
    under paper/."""
    return experiment if preset == "official" else f"paper/{experiment}"
