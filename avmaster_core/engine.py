"""Training engine: train, evaluate, resume, run folders, multi-GPU, and the `avmaster train|evaluate|score` commands.

    from avmaster_core.config import ModelConfig
    from avmaster_core.engine import TrainConfig, DataConfig, train, evaluate, load_checkpoint
    result = train(ModelConfig.official(), TrainConfig(epochs=30), DataConfig("music_avqa", "data/music_avqa"),
                   out_dir="results/runs", experiment="default")       # -> RunResult (paths, table, history)
    table, predictions = evaluate(result.best_checkpoint, "music_avqa", "test", "data/music_avqa")
    model, cfg = load_checkpoint("results/runs/default/1/best.pt")

The recipe is the authors' (official-code.md §7): Adam at 1e-4, StepLR ×0.1 every 8 epochs (stepped after
each epoch), 30 epochs, batch 64, keep the checkpoint with the best validation accuracy (ties go to the later
epoch, "current >= best"), then test it. Every value is a `TrainConfig` field.

One run writes one folder, `<out>/<experiment>/<seed>/`:

    config.json        the resolved model, train and data configs (plus versions)
    metrics.jsonl      one JSON line per epoch: lr, train losses, train/val accuracy, samples/s, time
    best.pt            the best-on-validation weights with their configs (what `load_checkpoint` reads)
    last.pt            everything needed to resume, rewritten every `checkpoint_every_steps` steps and each epoch
    predictions.json   per-question test predictions (scoring.write_predictions)
    test_table.csv     the test accuracies in the paper's Table II layout (scoring.score)
    summary.json       best epoch, best validation accuracy, test accuracy

Resuming (`resume=True`, `avmaster train --resume`) restores the weights, the optimiser, the scheduler,
all RNG states, the position inside the epoch, the running epoch statistics and the best-so-far, so a run
killed at any point finishes with the same predictions and metrics as one that never stopped (bit for bit
on CPU; tests/test_resume.py). The data order is a pure function of (seed, epoch), so skipping the batches
already seen reproduces the rest of the epoch exactly.

Multi-GPU: launch with `torchrun --nproc_per_node N -m avmaster_core.engine train ...`. Each rank trains on its
DistributedSampler shard and computes its own losses (the contrastive loss and its negatives are per rank,
as on one GPU with batch_size per rank); DDP averages the gradients. Evaluation is sharded and gathered.
Only rank 0 writes files.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

CHECKPOINT_FORMAT = 1

# Fields that may differ between an interrupted run and its resumption without changing the result.
_RESUME_FREE_FIELDS = {"progress", "num_workers", "device", "epochs", "features_on_device"}


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the authors' released recipe (official-code.md §7)."""

    lr: float = 1e-4                 # Adam learning rate of the official scripts
    betas: tuple[float, float] = (0.9, 0.999)  # PyTorch defaults, as in the official code
    weight_decay: float = 0.0        # the official code uses none
    lr_step: int = 8                 # StepLR step size in epochs: epochs 1-8 at 1e-4, 9-16 at 1e-5, ...
    lr_gamma: float = 0.1            # StepLR factor
    epochs: int = 30                 # official scripts; the paper does not state it
    batch_size: int = 64             # official default and README (the paper says 32); per rank under DDP
    eval_batch_size: int = 64        # evaluation has no backward, any size gives the same predictions
    seed: int = 1                    # seeds torch, numpy, random and the data order; the official seed is 1
    amp: bool = False                # bf16 autocast (the official code trains in fp32)
    compile: bool = False            # fast path (fast.py): CUDA-graph-captured step on one GPU, else torch.compile
    device: str = "auto"             # "auto" = cuda if available else cpu; or "cpu", "cuda", "cuda:1"
    num_workers: int = 0             # DataLoader workers for lazy (not preloaded) features; 0 = main process
    features_on_device: bool = True  # keep preloaded features on the GPU: batches are built there, no copies
    checkpoint_every_steps: int = 200  # also write last.pt inside an epoch, so a killed run loses little; 0 = epoch ends only
    eval_split: str | None = "val"   # model selection split; None keeps the last epoch
    test_split: str | None = "test"  # split scored with the best checkpoint at the end; None skips it
    find_unused_parameters: bool = True  # DDP: parts of the model may receive no gradient (e.g. dead official modules)
    progress: bool = True            # tqdm bars with loss, accuracy and samples/s (rank 0 only)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size", "lr_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every_steps < 0:
            raise ValueError("TrainConfig.checkpoint_every_steps must be >= 0 (0 = only at epoch ends)")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class DataConfig:
    """Which data: a benchmark's annotations joined with a feature store."""

    dataset: str = "synthetic"        # "music_avqa", "music_avqa_r", "music_avqa_v2", "avqa" or "synthetic"
    root: str = "data/synthetic"      # folder holding the dataset's annotation files
    store: str | None = None          # HDF5 feature store; None = <root>/features.h5
    train_split: str = "train"
    T: int | None = None              # segments per video: None = as stored (all equal); an int keeps the first T
    pad: str | None = None            # videos shorter than T: None = error, "zero" or "edge" padding
    preload: bool = True              # read all features into memory once (False: per item from HDF5, for huge stores)
    limit: int | None = None          # keep only the first N records of every split (smoke runs)

    def store_path(self) -> Path:
        return Path(self.store) if self.store else Path(self.root) / "features.h5"


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


# ---------------------------------------------------------------------------------------------------------------
# Small utilities: atomic writes, RNG state, devices, distributed
# ---------------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_torch(obj, path: Path) -> None:
    _atomic_write(path, lambda p: torch.save(obj, p))


def _save_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda p: p.write_text(text))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),  # plain types: loadable with weights_only
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False     # this call created the process group (and so tears it down)
    reduce_device: str = "cpu"   # NCCL reduces CUDA tensors only

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_pref: str) -> _Dist:
    """Join the process group that torchrun describes through WORLD_SIZE/RANK/LOCAL_RANK (no-op otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Dist()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        use_cuda = device_pref != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    reduce_device = f"cuda:{local_rank}" if dist.get_backend() == "nccl" else "cpu"
    return _Dist(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns,
                 reduce_device=reduce_device)


def _teardown_distributed(ctx: _Dist) -> None:
    if ctx.enabled and ctx.owns_group:
        torch.distributed.destroy_process_group()


def _resolve_device(pref: str, ctx: _Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {pref!r} was asked for but CUDA is not available; use --device cpu")
        if ctx.enabled:
            return torch.device("cuda", ctx.local_rank)
    elif pref != "cpu":
        raise ValueError(f"unknown device {pref!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return torch.device(pref)


def _barrier(ctx: _Dist) -> None:
    if ctx.enabled:
        torch.distributed.barrier()


def _gather_objects(obj, ctx: _Dist) -> list:
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _all_sum(values: list[float], ctx: _Dist) -> list[float]:
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.reduce_device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _progress_bar(iterable, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


# ---------------------------------------------------------------------------------------------------------------
# Data: records, feature store, datasets, loaders (the data modules own the details)
# ---------------------------------------------------------------------------------------------------------------
def load_records(data_cfg: DataConfig, split: str):
    """The record table of one split (annotations.load_annotations), cut to `data_cfg.limit`."""
    from .annotations import load_annotations

    records = load_annotations(data_cfg.dataset, split, data_cfg.root)
    if data_cfg.limit is not None:
        records = records.iloc[: data_cfg.limit].reset_index(drop=True)
    if len(records) == 0:
        raise ValueError(f"split {split!r} of {data_cfg.dataset} under {data_cfg.root} has no records")
    return records


def _open_store(data_cfg: DataConfig):
    from .store import FeatureStore

    return FeatureStore(data_cfg.store_path(), "r")


def _wants_negatives(model_cfg) -> bool:
    """The official contrastive loss needs each sample's random negative (neg_audio/neg_visual)."""
    return model_cfg.contrastive == "official" and model_cfg.lambda_c != 0


def _make_dataset(records, store, data_cfg: DataConfig, *, negatives: bool, seed: int):
    """An AVQADataset; it checks up front that every record has its features (MissingFeatureError otherwise)."""
    from .dataset import AVQADataset

    return AVQADataset(records, store, with_negatives=negatives, T=data_cfg.T, seed=seed,
                       preload=data_cfg.preload, pad=data_cfg.pad)


def _epoch_order(n: int, seed: int, epoch: int, ctx: _Dist, shuffle: bool) -> list[int]:
    """This rank's item order for `epoch`, a pure function of (seed, epoch, rank, world size).

    One process: the dataset module's epoch permutation (the order `dataset.make_loader` gives). Several:
    that permutation padded by wrapping to a multiple of the world size and strided by rank, as
    DistributedSampler does, so every rank runs the same number of steps (DDP needs that).
    """
    from .dataset import epoch_permutation

    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n, dtype=np.int64)
    if ctx.enabled:
        total = math.ceil(n / ctx.world_size) * ctx.world_size
        order = np.resize(order, total)[ctx.rank::ctx.world_size]  # np.resize repeats from the start
    return order.tolist()


class _Batches:
    """Batches of `dataset` items `indices` (in that order), with the negatives of the dataset's current epoch.

    A preloaded dataset is batched by tensor indexing into its feature bank (which may live on the GPU);
    the values equal what the per-item path (DataLoader + collate) gives. A lazy dataset uses a DataLoader.
    """

    def __init__(self, dataset, indices: list[int], batch_size: int, *, device: torch.device, num_workers: int = 0,
                 bank=None):
        self.dataset, self.indices, self.batch_size = dataset, indices, batch_size
        self.device, self.num_workers, self.bank = device, num_workers, bank

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self):
        if self.bank is not None:
            negatives = self.dataset.negatives if self.dataset.with_negatives else None
            for start in range(0, len(self.indices), self.batch_size):
                items = torch.as_tensor(self.indices[start:start + self.batch_size], dtype=torch.long)
                yield _to_device(self.bank.gather(items, None if negatives is None else negatives[items]), self.device)
            return
        from .dataset import collate

        # An explicit generator keeps the DataLoader from drawing its worker base seed from the global torch
        # RNG, which would make the dropout stream depend on where an epoch was resumed.
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.indices, collate_fn=collate,
                            num_workers=self.num_workers, generator=torch.Generator().manual_seed(0),
                            pin_memory=self.device.type == "cuda")
        for batch in loader:
            yield _to_device(batch, self.device)


def _bank_on(dataset, device: torch.device, on_device: bool, num_workers: int):
    """The dataset's preloaded feature bank, moved to `device` when asked (None: use the DataLoader path)."""
    if getattr(dataset, "bank", None) is None or num_workers > 0:
        return None
    return dataset.bank.to(device) if on_device else dataset.bank


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------------------------
# Model construction and checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _model_config_from_dict(d: dict):
    from .config import ModelConfig

    return ModelConfig.from_dict(d)


def _build_model(cfg):
    from .model import build_model

    return build_model(cfg)


def _read_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train a model (`avmaster train`) first")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not an avmaster checkpoint (no model_config/model); an official AV-Master "
                         "state dict loads with avmaster_core.from_official_state_dict")
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location="cpu", changes: dict | None = None):
    """(model, model_config) from a checkpoint written by `train` (best.pt or last.pt); the model is in eval mode.

    changes: ModelConfig fields to override that do not change the weights, e.g. the inference-only variants
    of Tables XII/XIII ({"inference_use_a": False}, {"combine": "mul"}).
    """
    ckpt = _read_checkpoint(path, map_location)
    cfg = _model_config_from_dict(ckpt["model_config"])
    if changes:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cfg)})
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown} in changes; see avmaster_core.config.ModelConfig")
        cfg = dataclasses.replace(cfg, **changes)
    model = _build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg


# ---------------------------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model, dataset, *, batch_size: int = 64, device="cpu", amp: bool = False, num_workers: int = 0,
            features_on_device: bool = True, progress: bool = True, ctx: _Dist | None = None, desc: str = "eval",
            bank=None) -> np.ndarray:
    """Predicted answer index for every item of `dataset` (an AVQADataset), in dataset order: argmax of
    out["logits"], the model's combination of its heads.

    Under DDP each rank predicts its shard and the shards are gathered, so every rank returns the full array.
    """
    ctx = ctx or _Dist()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    indices = _epoch_order(len(dataset), 0, 0, ctx, shuffle=False)
    if bank is None:
        bank = _bank_on(dataset, device, features_on_device, num_workers)
    batches = _Batches(dataset, indices, batch_size, device=device, num_workers=num_workers, bank=bank)
    preds: list[np.ndarray] = []
    bar = _progress_bar(batches, len(batches), desc, progress and ctx.is_main)
    for batch in bar:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(batch)
        preds.append(out["logits"].float().argmax(-1).cpu().numpy())
    bar.close()
    model.train(was_training)
    mine = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    if not ctx.enabled:
        return mine
    result = np.full(len(dataset), -1, dtype=np.int64)
    for rank_indices, rank_preds in _gather_objects((indices, mine), ctx):
        result[np.asarray(rank_indices, dtype=np.int64)] = rank_preds  # padding repeats give the same answer
    return result


def _accuracy(records, pred_idx: np.ndarray) -> float:
    """Percent correct (the unit of the paper's tables)."""
    return 100.0 * float(np.mean(records["answer_idx"].to_numpy() == pred_idx)) if len(records) else float("nan")


def _prediction_series(records, pred_idx: np.ndarray):
    """question_id -> predicted answer index (the form scoring.score and write_predictions take)."""
    import pandas as pd

    return pd.Series(pred_idx.astype(np.int64), index=records["question_id"].to_numpy(), name="prediction")


def _score(records, predictions):
    from .scoring import score

    return score(records, predictions)


def _write_predictions(path: Path, predictions, **header) -> None:
    from .scoring import write_predictions

    write_predictions(path, predictions, **header)  # atomic itself


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _config_record(model_cfg, train_cfg: TrainConfig, data_cfg: DataConfig, experiment: str) -> dict:
    return {
        "experiment": experiment,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(train_cfg),
        "data": dataclasses.asdict(data_cfg),
        "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__), "python": sys.version.split()[0]},
    }


def config_differences(saved: dict, current: dict, free: dict[str, set] | None = None) -> list[str]:
    """"part.field: saved -> current" for every model/train/data field that differs (JSON lists and tuples
    compare equal); `free` names, per part, fields that may differ (they do not change results)."""
    free = free or {}
    diffs = []
    for part in ("model", "train", "data"):
        a, b = saved.get(part, {}), current.get(part, {})
        for key in sorted(set(a) | set(b)):
            if key in free.get(part, ()):
                continue
            va, vb = a.get(key), b.get(key)
            if isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)):
                va, vb = list(va), list(vb)
            if va != vb:
                diffs.append(f"{part}.{key}: {va!r} -> {vb!r}")
    return diffs


def _check_resumable(saved: dict, current: dict, path: Path) -> None:
    """A resumed run must use the configs it started with (apart from fields that do not change results)."""
    diffs = config_differences(saved, current, {"train": _RESUME_FREE_FIELDS})
    if diffs:
        raise ValueError(f"cannot resume {path}: the configuration changed ({'; '.join(diffs)}). "
                         "Resume with the original settings, or start a new run in another --out folder.")


def train(model_cfg, train_cfg: TrainConfig = TrainConfig(), data_cfg: DataConfig = DataConfig(), *,
          out_dir: str | os.PathLike = "results/runs", experiment: str = "custom", run_dir=None,
          resume: bool = False, step_callback: Callable[[dict], None] | None = None) -> RunResult:
    """Train AV-Master, keep the best-on-validation checkpoint, score it on the test split.

    model_cfg: a ModelConfig (e.g. ModelConfig.official(), or config.experiment(name)).
    out_dir/experiment: the run folder is `<out_dir>/<experiment>/<seed>` unless `run_dir` is given.
    resume: continue from `<run_dir>/last.pt` if present (a finished run is only re-scored). Without it an
        existing checkpoint is an error, so a run is never silently overwritten.
    step_callback: called on every rank after each optimiser step (and after any checkpoint of that step)
        with {"epoch", "step", "global_step", "losses"}; useful for logging or for fault-injection tests.
    """
    ctx = _setup_distributed(train_cfg.device)
    device = _resolve_device(train_cfg.device, ctx)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(out_dir, experiment, train_cfg.seed)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    config_record = _config_record(model_cfg, train_cfg, data_cfg, experiment)
    show = train_cfg.progress and ctx.is_main

    saved = None
    if last_path.exists():
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run (last.pt): pass resume=True / --resume to "
                                  "continue it, or choose another --out / --seed")
        saved = torch.load(last_path, map_location="cpu", weights_only=True)
        _check_resumable(saved["config"], config_record, last_path)
    elif resume and ctx.is_main:
        print(f"[avmaster] nothing to resume in {run_dir}; starting a new run", file=sys.stderr)

    # -- data ------------------------------------------------------------------------------------------------
    store = _open_store(data_cfg)
    train_set = _make_dataset(load_records(data_cfg, data_cfg.train_split), store, data_cfg,
                              negatives=_wants_negatives(model_cfg), seed=train_cfg.seed)
    eval_set = _make_dataset(load_records(data_cfg, train_cfg.eval_split), store, data_cfg, negatives=False,
                             seed=train_cfg.seed) if train_cfg.eval_split else None
    on_device = train_cfg.features_on_device
    train_bank = _bank_on(train_set, device, on_device, train_cfg.num_workers)
    eval_bank = _bank_on(eval_set, device, on_device, train_cfg.num_workers) if eval_set is not None else None

    # -- model and optimiser -----------------------------------------------------------------------------------
    _seed_everything(train_cfg.seed)
    model = _build_model(model_cfg).to(device)
    if train_cfg.compile:  # the fast path (fast.py): on CUDA a capturable fused Adam, same update rule
        from .fast import make_optimizer

        optimizer = make_optimizer(model, lr=train_cfg.lr, betas=train_cfg.betas, weight_decay=train_cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                                     weight_decay=train_cfg.weight_decay,
                                     fused=True if device.type == "cpu" else None)  # benchmark.cpu_fused_adam
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train_cfg.lr_step, gamma=train_cfg.lr_gamma)

    state = {"next_epoch": 1, "next_step": 0, "best_val_acc": -math.inf, "best_epoch": 0, "history": [],
             "sums": None, "finished": False}
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        for key in state:
            state[key] = saved[key]
        rng = saved["rng"]
        _set_rng_state(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
        # A finished run resumed with more epochs trains on; otherwise it is only re-scored.
        state["finished"] = state["finished"] and state["next_epoch"] > train_cfg.epochs
        if ctx.is_main:
            print(f"[avmaster] resuming {run_dir} at epoch {state['next_epoch']}, step {state['next_step']}",
                  file=sys.stderr)

    forward = model
    if ctx.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=train_cfg.find_unused_parameters)
    runner = None
    if train_cfg.compile:
        # fast.FastRunner: on one GPU the whole training step is captured as a CUDA graph (eager fallback with a
        # warning where it cannot be); on the CPU or under DDP torch.compile of the forward.
        from .fast import FastRunner

        capture = "auto" if device.type == "cuda" and not ctx.enabled else "compile"
        runner = FastRunner(model, optimizer, precision="bf16" if train_cfg.amp else "fp32", capture=capture,
                            forward=forward)

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _save_text(json.dumps(config_record, indent=2, default=str) + "\n", run_dir / "config.json")

    def checkpoint_state() -> dict:
        rngs = _gather_objects(_rng_state(), ctx)
        return {
            "format": CHECKPOINT_FORMAT, "config": config_record,
            "model_config": config_record["model"], "train_config": config_record["train"],
            "data_config": config_record["data"],
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": rngs, **state,
        }

    def save_last() -> None:
        ckpt = checkpoint_state()  # collective (RNG gather): every rank takes part
        if ctx.is_main:
            _save_torch(ckpt, last_path)

    # -- epochs ------------------------------------------------------------------------------------------------
    while not state["finished"] and state["next_epoch"] <= train_cfg.epochs:
        epoch = state["next_epoch"]
        train_set.set_epoch(epoch)  # new random negatives each epoch, a function of (seed, epoch)
        order = _epoch_order(len(train_set), train_cfg.seed, epoch, ctx, shuffle=True)
        steps = math.ceil(len(order) / train_cfg.batch_size)
        start = state["next_step"]
        if state["sums"] is None or start == 0:
            state["sums"] = {"qa": 0.0, "a": 0.0, "v": 0.0, "c": 0.0, "total": 0.0, "correct": 0, "seen": 0,
                             "train_seconds": 0.0}
        sums = state["sums"]
        batches = _Batches(train_set, order[start * train_cfg.batch_size:], train_cfg.batch_size, device=device,
                           num_workers=train_cfg.num_workers, bank=train_bank)
        model.train()
        lr = float(optimizer.param_groups[0]["lr"])  # a device tensor for the fast path's Adam
        bar = _progress_bar(batches, len(batches), f"epoch {epoch}/{train_cfg.epochs}", show)
        tick = time.perf_counter()
        for step, batch in enumerate(bar, start=start + 1):
            if runner is not None:
                step_out = runner.train_step(batch)  # its tensors are overwritten by the next step: read now
                losses, logits = step_out.losses, step_out.logits
            else:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=train_cfg.amp):
                    out = forward(batch)
                    losses = model.loss(out, batch)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                logits = out["logits"]

            n = int(batch["label"].shape[0])
            for key in ("qa", "a", "v", "c", "total"):
                sums[key] += float(losses[key].detach()) * n
            sums["correct"] += int((logits.detach().argmax(-1) == batch["label"]).sum())
            sums["seen"] += n
            now = time.perf_counter()
            sums["train_seconds"] += now - tick
            tick = now
            if show:
                bar.set_postfix(loss=f"{sums['total'] / sums['seen']:.3f}",
                                acc=f"{100 * sums['correct'] / sums['seen']:.1f}%",
                                sps=f"{sums['seen'] / max(sums['train_seconds'], 1e-9):.1f}")
            state["next_step"] = step
            every = train_cfg.checkpoint_every_steps
            if every and step % every == 0 and step < steps:
                save_last()
                tick = time.perf_counter()
            if step_callback is not None:
                step_callback({"epoch": epoch, "step": step, "global_step": (epoch - 1) * steps + step,
                               "losses": {k: float(v.detach()) for k, v in losses.items()}})
        bar.close()

        # -- end of epoch: validation, model selection, schedule, log --------------------------------------------
        totals = _all_sum([sums[k] for k in ("qa", "a", "v", "c", "total", "correct", "seen")], ctx)
        seen = max(totals[6], 1)
        eval_start = time.perf_counter()
        val_acc = None
        if eval_set is not None:
            pred = predict(model, eval_set, batch_size=train_cfg.eval_batch_size, device=device, amp=train_cfg.amp,
                           num_workers=train_cfg.num_workers, progress=show, ctx=ctx, desc=f"val {epoch}",
                           bank=eval_bank)
            val_acc = _accuracy(eval_set.records, pred)
        is_best = val_acc is None or val_acc >= state["best_val_acc"]
        if is_best:
            state["best_val_acc"] = val_acc if val_acc is not None else state["best_val_acc"]
            state["best_epoch"] = epoch
            if ctx.is_main:
                _save_torch({"format": CHECKPOINT_FORMAT, "model_config": config_record["model"],
                             "train_config": config_record["train"], "data_config": config_record["data"],
                             "experiment": experiment, "epoch": epoch, "val_acc": val_acc,
                             "model": model.state_dict()}, best_path)
        scheduler.step()
        record = {
            "epoch": epoch, "lr": lr,
            **{f"train_loss_{k}": totals[i] / seen for i, k in enumerate(("qa", "a", "v", "c", "total"))},
            "train_acc": 100.0 * totals[5] / seen, "val_acc": val_acc, "is_best": is_best,
            "train_samples": int(totals[6]),
            "samples_per_s": totals[6] / max(sums["train_seconds"], 1e-9),  # all ranks together
            "train_seconds": sums["train_seconds"], "eval_seconds": time.perf_counter() - eval_start,
        }
        state["history"].append(record)
        state["next_epoch"], state["next_step"], state["sums"] = epoch + 1, 0, None
        if ctx.is_main:
            _save_text("".join(json.dumps(r) + "\n" for r in state["history"]), run_dir / "metrics.jsonl")
            if show:
                val_text = f"{val_acc:.2f}" if val_acc is not None else "-"
                print(f"[avmaster] epoch {epoch}: loss {record['train_loss_total']:.4f} "
                      f"train acc {record['train_acc']:.2f}% val acc {val_text}% lr {lr:.1e} "
                      f"{record['samples_per_s']:.1f} samples/s", file=sys.stderr)
        save_last()

    # -- test with the best checkpoint ---------------------------------------------------------------------------
    _barrier(ctx)
    result = RunResult(run_dir=run_dir, best_epoch=state["best_epoch"],
                       best_val_acc=state["best_val_acc"] if train_cfg.eval_split else None,
                       test_acc=None, history=list(state["history"]))
    if train_cfg.test_split:
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(best["model"])
        test_set = _make_dataset(load_records(data_cfg, train_cfg.test_split), store, data_cfg, negatives=False,
                                 seed=train_cfg.seed)
        test_records = test_set.records
        pred = predict(model, test_set, batch_size=train_cfg.eval_batch_size, device=device, amp=train_cfg.amp,
                       num_workers=train_cfg.num_workers, features_on_device=on_device, progress=show, ctx=ctx,
                       desc="test")
        predictions = _prediction_series(test_records, pred)
        result.test_acc = _accuracy(test_records, pred)
        result.table = _score(test_records, predictions)
        if ctx.is_main:
            _write_predictions(result.predictions_path, predictions, dataset=data_cfg.dataset,
                               split=train_cfg.test_split, meta={"experiment": experiment, "seed": train_cfg.seed,
                                                                 "best_epoch": state["best_epoch"]})
            _atomic_write(result.table_path, lambda p: result.table.to_csv(p))
    if ctx.is_main:
        summary = {"experiment": experiment, "seed": train_cfg.seed, "best_epoch": result.best_epoch,
                   "best_val_acc": result.best_val_acc, "test_acc": result.test_acc,
                   "epochs": len(state["history"])}
        _save_text(json.dumps(summary, indent=2) + "\n", run_dir / "summary.json")
    if not state["finished"]:
        state["finished"] = True
        save_last()
    store.close()
    _barrier(ctx)
    _teardown_distributed(ctx)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Evaluation of a saved checkpoint
# ---------------------------------------------------------------------------------------------------------------
def evaluate(checkpoint: str | os.PathLike, dataset: str, split: str = "test", root: str | os.PathLike = ".", *,
             store: str | os.PathLike | None = None, batch_size: int = 64, device: str = "auto",
             amp: bool = False, limit: int | None = None, T: int | None = None, pad: str | None = None,
             changes: dict | None = None, progress: bool = True):
    """Score a checkpoint on one split: returns (table in the paper's layout, per-question predictions).

    predictions: a pandas Series question_id -> predicted answer index (scoring.write_predictions writes it).
    The number of segments T and its padding are taken from the checkpoint's data config unless given.
    changes: inference-only ModelConfig overrides (see load_checkpoint), e.g. Table XII's {"inference_use_a": False}.
    """
    dev = _resolve_device(device, _Dist())
    model, _ = load_checkpoint(checkpoint, map_location="cpu", changes=changes)
    saved_data = _read_checkpoint(checkpoint).get("data_config") or {}
    data_cfg = DataConfig(dataset=dataset, root=str(root), store=str(store) if store else None, limit=limit,
                          T=T if T is not None else saved_data.get("T"),
                          pad=pad if pad is not None else saved_data.get("pad"))
    model.to(dev)
    with _open_store(data_cfg) as feature_store:
        data = _make_dataset(load_records(data_cfg, split), feature_store, data_cfg, negatives=False, seed=0)
        pred = predict(model, data, batch_size=batch_size, device=dev, amp=amp, progress=progress, desc=split)
    records = data.records
    predictions = _prediction_series(records, pred)
    return _score(records, predictions), predictions


# ---------------------------------------------------------------------------------------------------------------
# Command line: avmaster train | evaluate | score
# ---------------------------------------------------------------------------------------------------------------
_TRAIN_EPILOG = """\
examples:
  # about a minute on one CPU core: a narrow model on the bundled synthetic benchmark
  avmaster synth --out data/synthetic
  avmaster train --dataset synthetic --root data/synthetic --device cpu --epochs 3 --lr 1e-3 \\
      --set dim=64 --set focus_ffn=128 --name smoke
  # this should give: test accuracy 52.1 % (question-only ceiling 41.2 %), ~200 samples/s

  # the paper's main result (Table II, official recipe) on one GPU, from official-protocol features
  avmaster train --experiment default --dataset music_avqa --root data/music_avqa \\
      --store data/music_avqa/features.h5 --device cuda

  # an ablation (Table VII, w/o TDPP), seed 2, and the paper-as-written preset
  avmaster train --experiment table7/wo_tdpp --seed 2 --dataset music_avqa --root data/music_avqa
  avmaster train --preset paper --dataset music_avqa --root data/music_avqa

  # continue an interrupted run: the same command plus --resume
  avmaster train --experiment default --dataset music_avqa --root data/music_avqa --device cuda --resume

  # 4 GPUs on one machine (the batch size is per GPU: 4 x 16 = 64)
  torchrun --nproc_per_node 4 -m avmaster_core.engine train --dataset music_avqa \\
      --root data/music_avqa --batch-size 16

Each run writes <out>/<name>/<seed>/: config.json, metrics.jsonl (one line per epoch), best.pt,
last.pt, predictions.json, test_table.csv (the paper's table layout) and summary.json.
"""

_EVALUATE_EPILOG = """\
examples:
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa --split test \\
      --root data/music_avqa --out results/eval/default
  avmaster evaluate --checkpoint results/runs/smoke/1/best.pt --dataset synthetic --root data/synthetic

  # Table XII "w/o APE": the same weights, the audio preference head left out of the answer
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa --root data/music_avqa \\
      --set inference_use_a=false --out results/eval/table12_wo_ape

  # the same checkpoint on MUSIC-AVQA-R (trained on MUSIC-AVQA)
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa_r --split test \\
      --root data/music_avqa_r --store data/music_avqa/features.h5
"""

_SCORE_EPILOG = """\
examples:
  avmaster score --dataset music_avqa --split test --root data/music_avqa \\
      --predictions results/runs/default/1/predictions.json --out results/table2_ours.csv
"""


def _parse_overrides(items: list[str] | None) -> dict:
    """["dim=64", "contrastive=in_batch"] -> {"dim": 64, "contrastive": "in_batch"} (values read as JSON if they can be)."""
    changes = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE (a ModelConfig field), got {item!r}")
        try:
            changes[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            changes[key.strip()] = text
    return changes


def _model_config_for(experiment: str, preset: str, overrides: list[str] | None,
                      size: str = "full"):
    from . import config

    try:
        model_cfg = config.experiment(experiment, preset, size)
    except KeyError as e:
        raise SystemExit(f"--experiment: {e.args[0]}") from None
    changes = _parse_overrides(overrides)
    known = {f.name for f in dataclasses.fields(model_cfg)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise SystemExit(f"--set: unknown ModelConfig field(s) {unknown}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(model_cfg, **changes)


def _run_name(experiment: str, preset: str, overrides: list[str] | None) -> str:
    """The run folder name: the experiment, under paper/ for the paper preset, + a suffix for --set changes."""
    name = experiment if preset == "official" else f"paper/{experiment}"
    if overrides:
        name += "+" + ",".join(sorted(o.replace("/", "_") for o in overrides))
    return name


def _train_command(args) -> int:
    from .config import EXPERIMENT_SEGMENTS

    model_cfg = _model_config_for(args.experiment, args.preset, args.set, args.size)
    overrides = {"epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
                 "device": args.device, "num_workers": args.num_workers,
                 "checkpoint_every_steps": args.checkpoint_every}
    train_cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None},
                            amp=args.amp, compile=args.compile, progress=not args.no_progress)
    T = args.T if args.T is not None else EXPERIMENT_SEGMENTS.get(args.experiment)
    data_cfg = DataConfig(dataset=args.dataset, root=args.root, store=args.store, T=T, pad=args.pad,
                          limit=args.limit)
    result = train(model_cfg, train_cfg, data_cfg, out_dir=args.out,
                   experiment=args.name or _run_name(args.experiment, args.preset, args.set), resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {result.run_dir}")
        val = "-" if result.best_val_acc is None else f"{result.best_val_acc:.2f}%"
        test = "-" if result.test_acc is None else f"{result.test_acc:.2f}%"
        print(f"best epoch {result.best_epoch}: val acc {val}, test acc {test}")
        if result.table is not None:
            print(result.table.round(2).to_string())
    return 0


def _evaluate_command(args) -> int:
    table, predictions = evaluate(args.checkpoint, args.dataset, args.split, args.root, store=args.store,
                                  batch_size=args.batch_size, device=args.device, amp=args.amp, limit=args.limit,
                                  T=args.T, pad=args.pad, changes=_parse_overrides(args.set),
                                  progress=not args.no_progress)
    print(table.to_string())
    if args.out:
        out = Path(args.out)
        _write_predictions(out / "predictions.json", predictions, dataset=args.dataset, split=args.split,
                           meta={"checkpoint": str(args.checkpoint)})
        _atomic_write(out / f"{args.split}_table.csv", lambda p: table.to_csv(p))
        print(f"wrote {out / 'predictions.json'} and {out / f'{args.split}_table.csv'}")
    return 0


def _score_command(args) -> int:
    from .scoring import read_predictions

    records = load_records(DataConfig(dataset=args.dataset, root=args.root), args.split)
    table = _score(records, read_predictions(args.predictions))
    print(table.to_string())
    if args.out:
        _atomic_write(Path(args.out), lambda p: table.to_csv(p))
        print(f"wrote {args.out}")
    return 0


def _add_data_arguments(p: argparse.ArgumentParser, split: bool) -> None:
    p.add_argument("--dataset", required=True,
                   help="music_avqa, music_avqa_r, music_avqa_v2, avqa or synthetic")
    p.add_argument("--root", required=True, help="folder with the dataset's annotation files")
    if split:
        p.add_argument("--split", default="test", help="split to score (default: test)")


def register(subparsers) -> None:
    """Add `train`, `evaluate` and `score` to the `avmaster` command."""
    from .config import SIZES

    fmt = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser("train", help="train a model; writes a run folder", formatter_class=fmt,
                              description="Train AV-Master with the authors' recipe (Adam 1e-4, x0.1 every 8 "
                                          "epochs, 30 epochs, batch 64), keep the best-on-validation "
                                          "checkpoint and score it on the test split.",
                              epilog=_TRAIN_EPILOG)
    p.add_argument("--experiment", default="default",
                   help="named model configuration (avmaster_core.config.EXPERIMENTS), e.g. default, "
                        "table7/wo_tdpp, table9/len4 (default: default)")
    p.add_argument("--preset", default="official", choices=("official", "paper"),
                   help="build the experiment on the released code's preset or the paper's (default official)")
    p.add_argument("--size", default="full", choices=tuple(SIZES),
                   help="model size (avmaster_core.config.SIZES): full (default) or cpu (dim 64, CPU-trainable)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change one ModelConfig field, e.g. --set dim=64 (repeatable)")
    _add_data_arguments(p, split=False)
    p.add_argument("--store", help="HDF5 feature store (default: <root>/features.h5)")
    p.add_argument("--T", type=int, help="segments per video (default: as stored; fig4/T* experiments set it)")
    p.add_argument("--pad", choices=("zero", "edge"), help="pad videos shorter than --T (default: error)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 30)")
    p.add_argument("--seed", type=int, help="random seed (default 1)")
    p.add_argument("--batch-size", type=int, help="training batch size per process (default 64)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="bf16 mixed precision")
    p.add_argument("--compile", action="store_true",
                   help="fast path: on one GPU the train step is captured as a CUDA graph (avmaster_core.fast), "
                        "elsewhere torch.compile; falls back to eager with a warning")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also save last.pt every STEPS steps inside an epoch (default 200; 0 = epoch ends only)")
    p.add_argument("--limit", type=int, help="use only the first N records of each split (smoke runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from last.pt")
    p.add_argument("--out", default="results/runs", help="runs folder (default results/runs)")
    p.add_argument("--name", help="run folder name under --out (default: the experiment, paper/<experiment> "
                                  "for --preset paper, plus any --set changes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_command)

    p = subparsers.add_parser("evaluate", help="score a checkpoint on a split", formatter_class=fmt,
                              description="Load a checkpoint written by `avmaster train`, predict a split and "
                                          "print the accuracies in the paper's Table II layout.",
                              epilog=_EVALUATE_EPILOG)
    p.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run folder")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="inference-only ModelConfig change, e.g. --set inference_use_a=false (Table XII) or "
                        "--set combine=mul (Table XIII); repeatable")
    _add_data_arguments(p, split=True)
    p.add_argument("--store", help="HDF5 feature store (default: <root>/features.h5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="bf16 mixed precision")
    p.add_argument("--T", type=int, help="segments per video (default: the checkpoint's training setting)")
    p.add_argument("--pad", choices=("zero", "edge"), help="pad videos shorter than --T")
    p.add_argument("--limit", type=int, help="score only the first N records (smoke runs)")
    p.add_argument("--out", help="folder for predictions.json and <split>_table.csv")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate_command)

    p = subparsers.add_parser("score", help="score a predictions file", formatter_class=fmt,
                              description="Score saved per-question predictions against a split's answers and "
                                          "print the paper's Table II layout.",
                              epilog=_SCORE_EPILOG)
    _add_data_arguments(p, split=True)
    p.add_argument("--predictions", required=True, help="predictions.json written by train or evaluate")
    p.add_argument("--out", help="also write the table to this CSV file")
    p.set_defaults(func=_score_command)


def main(argv: list[str] | None = None) -> int:
    """`python -m avmaster_core.engine train|evaluate|score ...` (the form torchrun launches)."""
    parser = argparse.ArgumentParser(prog="avmaster_core.engine",
                                     description="train, evaluate and score (same as `avmaster ...`)")
    register(parser.add_subparsers(dest="command", metavar="<command>", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
