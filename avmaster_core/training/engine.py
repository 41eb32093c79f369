"""Training: `train()` and its steps. Also the package's training-facing names, re-exported from their modules.

    from avmaster_core.core.config import ModelConfig
    from avmaster_core.training.engine import TrainConfig, DataConfig, train, evaluate, load_checkpoint
    result = train(ModelConfig.official(), TrainConfig(epochs=30), DataConfig("music_avqa", "data/music_avqa"),
                   out_dir="results/runs", experiment="default")       # -> RunResult (paths, table, history)
    table, predictions = evaluate(result.best_checkpoint, "music_avqa", "test", "data/music_avqa")
    model, cfg = load_checkpoint("results/runs/default/1/best.pt")

Where things live: run_config (TrainConfig, DataConfig, RunResult, which fields may differ on resume),
checkpoint (best.pt/last.pt, RNG state), evaluation (predict, evaluate), distributed (torchrun helpers),
dataset (the batch iterator), atomic (file writes), commands (the `train|evaluate|score` commands).

The recipe is the authors' released one: Adam at 1e-4, StepLR x0.1 every 8 epochs (stepped after each
epoch), 30 epochs, batch 64, keep the checkpoint with the best validation accuracy (ties go to the later
epoch, "current >= best"), then test it. Every value is a `TrainConfig` field.

One run writes one folder, `<out>/<experiment>/<seed>/`:

    config.json        the resolved model, train and data configs (plus versions), and "provenance": commit,
                       configuration hash, data and store fingerprints, torch, device, threads (provenance.py)
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

Multi-GPU: launch with `torchrun --nproc_per_node N -m avmaster_core.cli train ...`. Each rank trains on its
DistributedSampler-like shard and computes its own losses (the contrastive loss and its negatives are per
rank, as on one GPU with batch_size per rank); DDP averages the gradients. Evaluation is sharded and
gathered. Only rank 0 writes files.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core import checkpoint
from ..core.atomic import atomic_write, write_json, write_text
from ..core.checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint, rng_state, save_best,
                               seed_everything, set_rng_state)
from ..core.config import ModelConfig
from ..core.dataset import (AVQADataset, FeatureBank, bank_for, dataset_batches, epoch_order, make_dataset, open_store,
                            require_word_mask)
from ..core.model import AVMaster, build_model
from ..core.store import FeatureStore
from ..data.annotations import load_records
from ..data.scoring import score, write_predictions
from .distributed import (DistContext, all_sum, barrier, gather_objects, resolve_device, setup_distributed,
                          teardown_distributed)
from .evaluation import accuracy, evaluate, predict, prediction_series, progress_bar
from .fast import FastRunner, make_optimizer
from .precision import autocast, check_precision, fp32_outputs
from .preflight import splits_of
from .provenance import run_provenance
from .run_config import (DataConfig, RunFolder, RunResult, TrainConfig, config_differences, free_fields,
                         lock_run_folder, run_dir_for)

# The package's training-facing names (README), wherever they are defined.
__all__ = ["train", "TrainConfig", "DataConfig", "RunResult", "evaluate", "predict", "load_checkpoint",
           "run_dir_for", "config_differences", "CHECKPOINT_FORMAT"]

LOSS_KEYS = ("qa", "a", "v", "c", "total")


# ------------------------------------------------------------------------------------------- what the steps pass
@dataclass(frozen=True)
class Run(RunFolder):
    """What one `train` call is about, fixed from its start: the configs, the run folder, the process group."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    data_cfg: DataConfig
    experiment: str
    run_dir: Path
    ctx: DistContext
    device: torch.device
    config_record: dict              # config.json, and the configs saved in best.pt / last.pt
    show: bool                       # progress output (rank 0 with progress on)


@dataclass(frozen=True)
class Data:
    """The open feature store, the train and validation datasets and their placed feature banks."""

    store: FeatureStore
    train_set: AVQADataset
    eval_set: AVQADataset | None
    train_bank: FeatureBank | None
    eval_bank: FeatureBank | None


@dataclass(frozen=True)
class Optimisation:
    """The model, what a step calls (the model or its DDP wrapper), Adam, StepLR and the fast path's runner."""

    model: AVMaster
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    runner: FastRunner | None = None


@dataclass
class LoopState:
    """The loop's position and results; last.pt holds its fields (`as_dict`), so a resumed run continues here."""

    next_epoch: int = 1
    next_step: int = 0               # steps of `next_epoch` already taken
    best_val_acc: float = -math.inf
    best_epoch: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)   # metrics.jsonl, one record per epoch
    sums: dict | None = None         # the running sums of the epoch in progress
    finished: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, saved: dict) -> "LoopState":
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls)})


def train(model_cfg, train_cfg: TrainConfig = TrainConfig(), data_cfg: DataConfig = DataConfig(), *,
          out_dir: str | os.PathLike = "results/runs", experiment: str = "custom", run_dir=None,
          resume: bool = False, step_callback: Callable[[dict], None] | None = None) -> RunResult:
    """Train AV-Master, keep the best-on-validation checkpoint, score it on the test split.

    model_cfg: a ModelConfig (e.g. ModelConfig.official(), or experiments.experiment(name)).
    out_dir/experiment: the run folder is `<out_dir>/<experiment>/<seed>` unless `run_dir` is given.
    resume: continue from `<run_dir>/last.pt` if present (a finished run is only re-scored). Without it an
        existing checkpoint is an error, so a run is never silently overwritten.
    The run folder has one writer: while training, rank 0 holds its lock (run_config.lock_run_folder), and a
    second process training into it is refused with RunFolderInUseError naming the first.
    step_callback: called on every rank after each optimiser step (and after any checkpoint of that step)
        with {"epoch", "step", "global_step", "losses"}; useful for logging or for fault-injection tests.
    """
    ctx = setup_distributed(train_cfg.device)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(out_dir, experiment, train_cfg.seed)
    lock = lock_run_folder(run_dir) if ctx.is_main else None  # before anything in the folder is read
    try:
        run = Run(model_cfg, train_cfg, data_cfg, experiment, run_dir, ctx,
                  device=resolve_device(train_cfg.device, ctx),
                  config_record=config_record(model_cfg, train_cfg, data_cfg, experiment),
                  show=train_cfg.progress and ctx.is_main)
        return _train(run, resume, step_callback)
    finally:
        if lock is not None:
            lock.release()


def _train(run: Run, resume: bool, step_callback) -> RunResult:
    check_precision(run.train_cfg.precision, run.device)  # before any data is read
    saved = read_resume_point(run, resume)
    record_provenance(run, saved)
    data = prepare_data(run)
    opt = build_model_and_optimizer(run)
    state = restore(run, opt, saved)
    opt = prepare_step(run, opt)
    write_config(run)
    while not state.finished and state.next_epoch <= run.train_cfg.epochs:
        epoch = state.next_epoch
        sums, lr = train_one_epoch(run, data, opt, state, epoch, step_callback)
        end_of_epoch(run, data, opt, state, epoch, sums, lr)
    barrier(run.ctx)
    result = test_best(run, data, opt, state)
    finish(run, data, opt, state, result)
    return result


# ------------------------------------------------------------------------------------------------ the steps
def config_record(model_cfg, train_cfg: TrainConfig, data_cfg: DataConfig, experiment: str) -> dict:
    """config.json: the resolved configs of a run, plus the library versions."""
    return {
        "experiment": experiment,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(train_cfg),
        "data": dataclasses.asdict(data_cfg),
        "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__), "python": sys.version.split()[0]},
    }


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    """A resumed run must use the configs it started with, apart from run_config.free_fields(resuming=True)."""
    diffs = config_differences(saved, current, free_fields(resuming=True))
    if diffs:
        raise ValueError(f"cannot resume {path}: the configuration changed ({'; '.join(diffs)}). "
                         "Resume with the original settings, or start a new run in another --out folder.")


def read_resume_point(run: Run, resume: bool) -> dict | None:
    """last.pt's content when resuming (checked against the configs), None for a new run."""
    if not run.last_checkpoint.exists():
        if resume and run.ctx.is_main:
            print(f"[avmaster] nothing to resume in {run.run_dir}; starting a new run", file=sys.stderr)
        return None
    if not resume:
        raise FileExistsError(f"{run.run_dir} already holds a run (last.pt): pass resume=True / --resume to "
                              "continue it, or choose another --out / --seed")
    saved = read_checkpoint(run.last_checkpoint, remedy=f"move it away (e.g. `mv {run.last_checkpoint} "
                            f"{run.last_checkpoint}.broken`) and rerun the same command, which then starts this run over")
    check_resumable(saved["config"], run.config_record, run.last_checkpoint)
    return saved


def record_provenance(run: Run, saved: dict | None) -> None:
    """config.json's "provenance": code, configuration hash, data, device (provenance.py); rank 0 only."""
    if run.ctx.is_main:
        run.config_record["provenance"] = run_provenance(
            run.config_record, run.data_cfg, splits_of(run.train_cfg, run.data_cfg), run.device,
            earlier=saved["config"].get("provenance") if saved else None)


def wants_negatives(model_cfg) -> bool:
    """The official contrastive loss needs each sample's random negative (neg_audio/neg_visual)."""
    return model_cfg.contrastive == "official" and model_cfg.lambda_c != 0


def prepare_data(run: Run) -> Data:
    """The open store, the train and validation datasets, their feature banks placed for the steps."""
    cfg, data_cfg = run.train_cfg, run.data_cfg
    store = open_store(data_cfg)
    masks = run.model_cfg.mask_padding  # each question's word positions, read only when the model masks padding
    train_set = make_dataset(load_records(data_cfg, data_cfg.train_split), store, data_cfg,
                             negatives=wants_negatives(run.model_cfg), seed=cfg.seed, word_masks=masks)
    eval_set = make_dataset(load_records(data_cfg, cfg.eval_split), store, data_cfg,
                            seed=cfg.seed, word_masks=masks) if cfg.eval_split else None
    require_word_mask(run.model_cfg, train_set, eval_set)  # mask_padding needs each question's word positions
    placement = dict(on_device=cfg.features_on_device, num_workers=cfg.num_workers)
    return Data(store, train_set, eval_set, train_bank=bank_for(train_set, run.device, **placement),
                eval_bank=bank_for(eval_set, run.device, **placement) if eval_set is not None else None)


def build_model_and_optimizer(run: Run) -> Optimisation:
    """The seeded model on its device, Adam (the fast path's capturable Adam with compile) and StepLR."""
    cfg = run.train_cfg
    seed_everything(cfg.seed)
    model = build_model(run.model_cfg).to(run.device)
    if cfg.compile:  # the fast path (fast.py): on CUDA a capturable fused Adam, same update rule
        optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                     weight_decay=cfg.weight_decay,
                                     fused=True if run.device.type == "cpu" else None)  # benchmark.cpu_fused_adam
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return Optimisation(model, model, optimizer, scheduler)


def restore(run: Run, opt: Optimisation, saved: dict | None) -> LoopState:
    """The loop state of a new run, or everything last.pt holds (weights, optimiser, schedule, RNGs, position)."""
    if saved is None:
        return LoopState()
    opt.model.load_state_dict(saved["model"])
    opt.optimizer.load_state_dict(saved["optimizer"])
    opt.scheduler.load_state_dict(saved["scheduler"])
    state = LoopState.from_saved(saved)
    rng = saved["rng"]
    set_rng_state(rng[run.ctx.rank] if run.ctx.rank < len(rng) else rng[0])
    # A finished run resumed with more epochs trains on; otherwise it is only re-scored.
    state.finished = state.finished and state.next_epoch > run.train_cfg.epochs
    if run.ctx.is_main:
        print(f"[avmaster] resuming {run.run_dir} at epoch {state.next_epoch}, step {state.next_step}",
              file=sys.stderr)
    return state


def prepare_step(run: Run, opt: Optimisation) -> Optimisation:
    """The DDP wrapper under torchrun; with compile, fast.FastRunner: on one GPU the whole training step is
    captured as a CUDA graph (eager fallback with a warning where it cannot be), elsewhere torch.compile."""
    forward = opt.model
    if run.ctx.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(
            opt.model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=run.train_cfg.find_unused_parameters)
    runner = None
    if run.train_cfg.compile:
        capture = "auto" if run.device.type == "cuda" and not run.ctx.enabled else "compile"
        runner = FastRunner(opt.model, opt.optimizer, precision=run.train_cfg.precision,
                            capture=capture, forward=forward)
    return dataclasses.replace(opt, forward=forward, runner=runner)


def write_config(run: Run) -> None:
    if run.ctx.is_main:
        write_json(run.run_dir / "config.json", run.config_record, default=str)


def save_last(run: Run, opt: Optimisation, state: LoopState) -> None:
    """last.pt. Collective (the RNG states are gathered): every rank calls it, rank 0 writes."""
    rngs = gather_objects(rng_state(), run.ctx)
    if run.ctx.is_main:
        checkpoint.save_last(run.last_checkpoint, opt.model, opt.optimizer, opt.scheduler, run.config_record, rngs,
                             state.as_dict())


def optimizer_step(run: Run, opt: Optimisation, batch: dict) -> tuple[dict, torch.Tensor]:
    """One training step on `batch`: (losses, logits)."""
    if opt.runner is not None:
        out = opt.runner.train_step(batch)  # its tensors are overwritten by the next step: read now
        return out.losses, out.logits
    with autocast(run.device, run.train_cfg.precision):
        out = opt.forward(batch)
    losses = opt.model.loss(fp32_outputs(out), batch)
    opt.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    opt.optimizer.step()
    return losses, out["logits"]


def _epoch_batches(run: Run, data: Data, epoch: int, start: int):
    """(batches from step `start` on, steps in the whole epoch) of this rank's shard of `epoch`."""
    data.train_set.set_epoch(epoch)  # new random negatives each epoch, a function of (seed, epoch)
    order = epoch_order(len(data.train_set), run.train_cfg.seed, epoch, rank=run.ctx.rank,
                        world_size=run.ctx.world_size, even=True)
    size = run.train_cfg.batch_size
    batches = dataset_batches(data.train_set, order[start * size:], size, to=run.device, bank=data.train_bank,
                              num_workers=run.train_cfg.num_workers)
    return batches, math.ceil(len(order) / size)


def train_one_epoch(run: Run, data: Data, opt: Optimisation, state: LoopState, epoch: int,
                    step_callback=None) -> tuple[dict, float]:
    """Train `epoch` from its resume position (advancing state.next_step, checkpointing as configured);
    returns its running sums (losses x samples, correct, seen, time) and the epoch's learning rate."""
    cfg = run.train_cfg
    start = state.next_step
    batches, steps = _epoch_batches(run, data, epoch, start)
    if state.sums is None or start == 0:
        state.sums = {**{k: 0.0 for k in LOSS_KEYS}, "correct": 0, "seen": 0, "train_seconds": 0.0}
    sums = state.sums
    opt.model.train()
    lr = float(opt.optimizer.param_groups[0]["lr"])  # a device tensor for the fast path's Adam
    bar = progress_bar(batches, len(batches), f"epoch {epoch}/{cfg.epochs}", run.show)
    tick = time.perf_counter()
    for step, batch in enumerate(bar, start=start + 1):
        losses, logits = optimizer_step(run, opt, batch)
        n = int(batch["label"].shape[0])
        for key in LOSS_KEYS:
            sums[key] += float(losses[key].detach()) * n
        sums["correct"] += int((logits.detach().argmax(-1) == batch["label"]).sum())
        sums["seen"] += n
        now = time.perf_counter()
        sums["train_seconds"] += now - tick
        tick = now
        if run.show:
            bar.set_postfix(loss=f"{sums['total'] / sums['seen']:.3f}",
                            acc=f"{100 * sums['correct'] / sums['seen']:.1f}%",
                            sps=f"{sums['seen'] / max(sums['train_seconds'], 1e-9):.1f}")
        state.next_step = step
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps:
            save_last(run, opt, state)
            tick = time.perf_counter()
        if step_callback is not None:
            step_callback({"epoch": epoch, "step": step, "global_step": (epoch - 1) * steps + step,
                           "losses": {k: float(v.detach()) for k, v in losses.items()}})
    bar.close()
    return sums, lr


def validate(run: Run, data: Data, opt: Optimisation, epoch: int) -> float | None:
    """Validation accuracy in percent (None without a validation split)."""
    if data.eval_set is None:
        return None
    cfg = run.train_cfg
    pred = predict(opt.model, data.eval_set, batch_size=cfg.eval_batch_size, device=run.device,
                   precision=cfg.precision, num_workers=cfg.num_workers, progress=run.show, ctx=run.ctx, desc=f"val {epoch}",
                   bank=data.eval_bank)
    return accuracy(data.eval_set.records, pred)


def end_of_epoch(run: Run, data: Data, opt: Optimisation, state: LoopState, epoch: int, sums: dict,
                 lr: float) -> None:
    """Validation, model selection (best.pt), the LR schedule, metrics.jsonl and last.pt; the state moves to
    the next epoch."""
    totals = all_sum([sums[k] for k in (*LOSS_KEYS, "correct", "seen")], run.ctx)
    seen = max(totals[6], 1)
    eval_start = time.perf_counter()
    val_acc = validate(run, data, opt, epoch)
    is_best = val_acc is None or val_acc >= state.best_val_acc
    if is_best:
        state.best_val_acc = val_acc if val_acc is not None else state.best_val_acc
        state.best_epoch = epoch
        if run.ctx.is_main:
            save_best(run.best_checkpoint, opt.model, run.config_record, epoch=epoch, val_acc=val_acc)
    opt.scheduler.step()
    record = {
        "epoch": epoch, "lr": lr, **{f"train_loss_{k}": totals[i] / seen for i, k in enumerate(LOSS_KEYS)},
        "train_acc": 100.0 * totals[5] / seen, "val_acc": val_acc, "is_best": is_best,
        "train_samples": int(totals[6]),
        "samples_per_s": totals[6] / max(sums["train_seconds"], 1e-9),  # all ranks together
        "train_seconds": sums["train_seconds"], "eval_seconds": time.perf_counter() - eval_start,
    }
    state.history.append(record)
    state.next_epoch, state.next_step, state.sums = epoch + 1, 0, None
    if run.ctx.is_main:
        write_text(run.metrics_path, "".join(json.dumps(r) + "\n" for r in state.history))
        if run.show:
            val_text = f"{val_acc:.2f}" if val_acc is not None else "-"
            print(f"[avmaster] epoch {epoch}: loss {record['train_loss_total']:.4f} train acc "
                  f"{record['train_acc']:.2f}% val acc {val_text}% lr {lr:.1e} "
                  f"{record['samples_per_s']:.1f} samples/s", file=sys.stderr)
    save_last(run, opt, state)


def test_best(run: Run, data: Data, opt: Optimisation, state: LoopState) -> RunResult:
    """Reload best.pt, predict the test split, write predictions.json and test_table.csv."""
    cfg = run.train_cfg
    result = RunResult(run_dir=run.run_dir, best_epoch=state.best_epoch,
                       best_val_acc=state.best_val_acc if cfg.eval_split else None,
                       test_acc=None, history=list(state.history))
    if not cfg.test_split:
        return result
    best = torch.load(run.best_checkpoint, map_location="cpu", weights_only=True)
    opt.model.load_state_dict(best["model"])
    test_set = make_dataset(load_records(run.data_cfg, cfg.test_split), data.store, run.data_cfg, seed=cfg.seed,
                            word_masks=run.model_cfg.mask_padding)
    require_word_mask(run.model_cfg, test_set)
    pred = predict(opt.model, test_set, batch_size=cfg.eval_batch_size, device=run.device,
                   precision=cfg.precision, num_workers=cfg.num_workers, features_on_device=cfg.features_on_device, progress=run.show,
                   ctx=run.ctx, desc="test")
    predictions = prediction_series(test_set.records, pred)
    result.test_acc = accuracy(test_set.records, pred)
    result.table = score(test_set.records, predictions)
    if run.ctx.is_main:
        write_predictions(result.predictions_path, predictions, dataset=run.data_cfg.dataset, split=cfg.test_split,
                          meta={"experiment": run.experiment, "seed": cfg.seed, "best_epoch": state.best_epoch})
        atomic_write(result.table_path, lambda f: result.table.to_csv(f), mode="w")
    return result


def finish(run: Run, data: Data, opt: Optimisation, state: LoopState, result: RunResult) -> None:
    """summary.json, the final last.pt (marked finished), close the store, leave the process group."""
    if run.ctx.is_main:
        write_json(run.run_dir / "summary.json", {
            "experiment": run.experiment, "seed": run.train_cfg.seed, "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc, "test_acc": result.test_acc, "epochs": len(state.history)})
    if not state.finished:
        state.finished = True
        save_last(run, opt, state)
    data.store.close()
    barrier(run.ctx)
    teardown_distributed(run.ctx)
