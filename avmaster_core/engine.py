"""Training: `train()` and its steps. Also the package's training-facing names, re-exported from their modules.

    from avmaster_core.config import ModelConfig
    from avmaster_core.engine import TrainConfig, DataConfig, train, evaluate, load_checkpoint
    result = train(ModelConfig.official(), TrainConfig(epochs=30), DataConfig("music_avqa", "data/music_avqa"),
                   out_dir="results/runs", experiment="default")       # -> RunResult (paths, table, history)
    table, predictions = evaluate(result.best_checkpoint, "music_avqa", "test", "data/music_avqa")
    model, cfg = load_checkpoint("results/runs/default/1/best.pt")

Where things live: run_config (TrainConfig, DataConfig, RunResult, which fields may differ on resume),
checkpoint (best.pt/last.pt, RNG state), evaluation (predict, evaluate), distributed (torchrun helpers),
dataset (the batch iterator), atomic (file writes), engine_cli (the `train|evaluate|score` commands).

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

Multi-GPU: launch with `torchrun --nproc_per_node N -m avmaster_core.engine train ...`. Each rank trains on its
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
from typing import Any, Callable

import numpy as np
import torch

from .atomic import atomic_write, write_json, write_text
from . import checkpoint
from .checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint, rng_state, save_best, seed_everything,
                         set_rng_state)
from .distributed import (DistContext, all_sum, barrier, gather_objects, resolve_device, setup_distributed,
                          teardown_distributed)
from .evaluation import accuracy, evaluate, predict, prediction_series, progress_bar
from .preflight import splits_of
from .provenance import run_provenance
from .run_config import (DataConfig, RunResult, TrainConfig, config_differences, free_fields,
                         load_records, lock_run_folder, make_dataset, open_store, run_dir_for)

# The package's training-facing names (README), wherever they are defined.
__all__ = ["train", "TrainConfig", "DataConfig", "RunResult", "evaluate", "predict", "load_checkpoint",
           "run_dir_for", "config_differences", "CHECKPOINT_FORMAT"]

LOSS_KEYS = ("qa", "a", "v", "c", "total")


@dataclass
class Training:
    """Everything one `train` call works with; the steps below read and update it."""

    model_cfg: Any
    train_cfg: TrainConfig
    data_cfg: DataConfig
    experiment: str
    run_dir: Path
    ctx: DistContext
    device: torch.device
    config_record: dict
    show: bool                       # progress output (rank 0 with progress on)
    store: Any = None
    train_set: Any = None
    eval_set: Any = None
    train_bank: Any = None
    eval_bank: Any = None
    model: Any = None
    forward: Any = None              # the model, or its DDP wrapper
    optimizer: Any = None
    scheduler: Any = None
    runner: Any = None               # fast.FastRunner with TrainConfig.compile
    state: dict = dataclasses.field(default_factory=dict)   # the loop's position and results (saved in last.pt)

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"


def train(model_cfg, train_cfg: TrainConfig = TrainConfig(), data_cfg: DataConfig = DataConfig(), *,
          out_dir: str | os.PathLike = "results/runs", experiment: str = "custom", run_dir=None,
          resume: bool = False, step_callback: Callable[[dict], None] | None = None) -> RunResult:
    """Train AV-Master, keep the best-on-validation checkpoint, score it on the test split.

    model_cfg: a ModelConfig (e.g. ModelConfig.official(), or config.experiment(name)).
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
        return _train(model_cfg, train_cfg, data_cfg, experiment, run_dir, ctx, resume, step_callback)
    finally:
        if lock is not None:
            lock.release()


def _train(model_cfg, train_cfg, data_cfg, experiment, run_dir, ctx, resume, step_callback) -> RunResult:
    t = Training(model_cfg, train_cfg, data_cfg, experiment, run_dir, ctx,
                 device=resolve_device(train_cfg.device, ctx),
                 config_record=config_record(model_cfg, train_cfg, data_cfg, experiment),
                 show=train_cfg.progress and ctx.is_main)
    saved = read_resume_point(t, resume)
    if ctx.is_main:  # config.json's provenance: code, configuration hash, data, device (provenance.py)
        t.config_record["provenance"] = run_provenance(
            t.config_record, data_cfg, splits_of(train_cfg, data_cfg), t.device,
            earlier=saved["config"].get("provenance") if saved else None)
    prepare_data(t)
    build_model_and_optimizer(t)
    restore(t, saved)
    prepare_step(t)
    write_config(t)
    while not t.state["finished"] and t.state["next_epoch"] <= train_cfg.epochs:
        epoch = t.state["next_epoch"]
        sums, lr = train_one_epoch(t, epoch, step_callback)
        end_of_epoch(t, epoch, sums, lr)
    barrier(ctx)
    result = test_best(t)
    finish(t, result)
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


def read_resume_point(t: Training, resume: bool) -> dict | None:
    """last.pt's content when resuming (checked against the configs), None for a new run."""
    if not t.last_path.exists():
        if resume and t.ctx.is_main:
            print(f"[avmaster] nothing to resume in {t.run_dir}; starting a new run", file=sys.stderr)
        return None
    if not resume:
        raise FileExistsError(f"{t.run_dir} already holds a run (last.pt): pass resume=True / --resume to "
                              "continue it, or choose another --out / --seed")
    saved = read_checkpoint(t.last_path, remedy=f"move it away (e.g. `mv {t.last_path} {t.last_path}.broken`) and "
                            "rerun the same command, which then starts this run over")
    check_resumable(saved["config"], t.config_record, t.last_path)
    return saved


def wants_negatives(model_cfg) -> bool:
    """The official contrastive loss needs each sample's random negative (neg_audio/neg_visual)."""
    return model_cfg.contrastive == "official" and model_cfg.lambda_c != 0


def prepare_data(t: Training) -> None:
    """Open the store, build the train and validation datasets, place their feature banks."""
    from .dataset import bank_for, require_word_mask

    cfg, data_cfg = t.train_cfg, t.data_cfg
    t.store = open_store(data_cfg)
    t.train_set = make_dataset(load_records(data_cfg, data_cfg.train_split), t.store, data_cfg,
                               negatives=wants_negatives(t.model_cfg), seed=cfg.seed)
    t.eval_set = make_dataset(load_records(data_cfg, cfg.eval_split), t.store, data_cfg,
                              seed=cfg.seed) if cfg.eval_split else None
    require_word_mask(t.model_cfg, t.train_set, t.eval_set)  # mask_padding needs each question's word positions
    placement = dict(on_device=cfg.features_on_device, num_workers=cfg.num_workers)
    t.train_bank = bank_for(t.train_set, t.device, **placement)
    t.eval_bank = bank_for(t.eval_set, t.device, **placement) if t.eval_set is not None else None


def build_model_and_optimizer(t: Training) -> None:
    """The seeded model on its device, Adam (the fast path's capturable Adam with compile) and StepLR."""
    cfg = t.train_cfg
    seed_everything(cfg.seed)
    from .model import build_model

    t.model = build_model(t.model_cfg).to(t.device)
    if cfg.compile:  # the fast path (fast.py): on CUDA a capturable fused Adam, same update rule
        from .fast import make_optimizer

        t.optimizer = make_optimizer(t.model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    else:
        t.optimizer = torch.optim.Adam(t.model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                       weight_decay=cfg.weight_decay,
                                       fused=True if t.device.type == "cpu" else None)  # benchmark.cpu_fused_adam
    t.scheduler = torch.optim.lr_scheduler.StepLR(t.optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def restore(t: Training, saved: dict | None) -> None:
    """The loop state of a new run, or everything last.pt holds (weights, optimiser, schedule, RNGs, position)."""
    t.state = {"next_epoch": 1, "next_step": 0, "best_val_acc": -math.inf, "best_epoch": 0, "history": [],
               "sums": None, "finished": False}
    if saved is None:
        return
    t.model.load_state_dict(saved["model"])
    t.optimizer.load_state_dict(saved["optimizer"])
    t.scheduler.load_state_dict(saved["scheduler"])
    for key in t.state:
        t.state[key] = saved[key]
    rng = saved["rng"]
    set_rng_state(rng[t.ctx.rank] if t.ctx.rank < len(rng) else rng[0])
    # A finished run resumed with more epochs trains on; otherwise it is only re-scored.
    t.state["finished"] = t.state["finished"] and t.state["next_epoch"] > t.train_cfg.epochs
    if t.ctx.is_main:
        print(f"[avmaster] resuming {t.run_dir} at epoch {t.state['next_epoch']}, step {t.state['next_step']}",
              file=sys.stderr)


def prepare_step(t: Training) -> None:
    """The DDP wrapper under torchrun; with compile, fast.FastRunner: on one GPU the whole training step is
    captured as a CUDA graph (eager fallback with a warning where it cannot be), elsewhere torch.compile."""
    t.forward = t.model
    if t.ctx.enabled:
        t.forward = torch.nn.parallel.DistributedDataParallel(
            t.model, device_ids=[t.device.index] if t.device.type == "cuda" else None,
            find_unused_parameters=t.train_cfg.find_unused_parameters)
    if t.train_cfg.compile:
        from .fast import FastRunner

        capture = "auto" if t.device.type == "cuda" and not t.ctx.enabled else "compile"
        t.runner = FastRunner(t.model, t.optimizer, precision="bf16" if t.train_cfg.amp else "fp32",
                              capture=capture, forward=t.forward)


def write_config(t: Training) -> None:
    if t.ctx.is_main:
        write_json(t.run_dir / "config.json", t.config_record, default=str)


def save_last(t: Training) -> None:
    """last.pt. Collective (the RNG states are gathered): every rank calls it, rank 0 writes."""
    rngs = gather_objects(rng_state(), t.ctx)
    if t.ctx.is_main:
        checkpoint.save_last(t.last_path, t.model, t.optimizer, t.scheduler, t.config_record, rngs, t.state)


def optimizer_step(t: Training, batch: dict) -> tuple[dict, torch.Tensor]:
    """One training step on `batch`: (losses, logits)."""
    if t.runner is not None:
        out = t.runner.train_step(batch)  # its tensors are overwritten by the next step: read now
        return out.losses, out.logits
    with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=t.train_cfg.amp):
        out = t.forward(batch)
        losses = t.model.loss(out, batch)
    t.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    t.optimizer.step()
    return losses, out["logits"]


def _epoch_batches(t: Training, epoch: int):
    """(batches from the resume position on, steps in the whole epoch) of this rank's shard of `epoch`."""
    from .dataset import dataset_batches, epoch_order

    t.train_set.set_epoch(epoch)  # new random negatives each epoch, a function of (seed, epoch)
    order = epoch_order(len(t.train_set), t.train_cfg.seed, epoch, rank=t.ctx.rank, world_size=t.ctx.world_size,
                        even=True)
    size = t.train_cfg.batch_size
    batches = dataset_batches(t.train_set, order[t.state["next_step"] * size:], size, to=t.device,
                              bank=t.train_bank, num_workers=t.train_cfg.num_workers)
    return batches, math.ceil(len(order) / size)


def train_one_epoch(t: Training, epoch: int, step_callback=None) -> tuple[dict, float]:
    """Train `epoch` from its resume position; returns its running sums (losses x samples, correct, seen, time)
    and the epoch's learning rate."""
    cfg, state = t.train_cfg, t.state
    batches, steps = _epoch_batches(t, epoch)
    start = state["next_step"]
    if state["sums"] is None or start == 0:
        state["sums"] = {**{k: 0.0 for k in LOSS_KEYS}, "correct": 0, "seen": 0, "train_seconds": 0.0}
    sums = state["sums"]
    t.model.train()
    lr = float(t.optimizer.param_groups[0]["lr"])  # a device tensor for the fast path's Adam
    bar = progress_bar(batches, len(batches), f"epoch {epoch}/{cfg.epochs}", t.show)
    tick = time.perf_counter()
    for step, batch in enumerate(bar, start=start + 1):
        losses, logits = optimizer_step(t, batch)
        n = int(batch["label"].shape[0])
        for key in LOSS_KEYS:
            sums[key] += float(losses[key].detach()) * n
        sums["correct"] += int((logits.detach().argmax(-1) == batch["label"]).sum())
        sums["seen"] += n
        now = time.perf_counter()
        sums["train_seconds"] += now - tick
        tick = now
        if t.show:
            bar.set_postfix(loss=f"{sums['total'] / sums['seen']:.3f}", acc=f"{100 * sums['correct'] / sums['seen']:.1f}%",
                            sps=f"{sums['seen'] / max(sums['train_seconds'], 1e-9):.1f}")
        state["next_step"] = step
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps:
            save_last(t)
            tick = time.perf_counter()
        if step_callback is not None:
            step_callback({"epoch": epoch, "step": step, "global_step": (epoch - 1) * steps + step,
                           "losses": {k: float(v.detach()) for k, v in losses.items()}})
    bar.close()
    return sums, lr


def validate(t: Training, epoch: int) -> float | None:
    """Validation accuracy in percent (None without a validation split)."""
    if t.eval_set is None:
        return None
    cfg = t.train_cfg
    pred = predict(t.model, t.eval_set, batch_size=cfg.eval_batch_size, device=t.device, amp=cfg.amp,
                   num_workers=cfg.num_workers, progress=t.show, ctx=t.ctx, desc=f"val {epoch}", bank=t.eval_bank)
    return accuracy(t.eval_set.records, pred)


def end_of_epoch(t: Training, epoch: int, sums: dict, lr: float) -> None:
    """Validation, model selection (best.pt), the LR schedule, metrics.jsonl and last.pt."""
    state = t.state
    totals = all_sum([sums[k] for k in (*LOSS_KEYS, "correct", "seen")], t.ctx)
    seen = max(totals[6], 1)
    eval_start = time.perf_counter()
    val_acc = validate(t, epoch)
    is_best = val_acc is None or val_acc >= state["best_val_acc"]
    if is_best:
        state["best_val_acc"] = val_acc if val_acc is not None else state["best_val_acc"]
        state["best_epoch"] = epoch
        if t.ctx.is_main:
            save_best(t.best_path, t.model, t.config_record, epoch=epoch, val_acc=val_acc)
    t.scheduler.step()
    record = {
        "epoch": epoch, "lr": lr, **{f"train_loss_{k}": totals[i] / seen for i, k in enumerate(LOSS_KEYS)},
        "train_acc": 100.0 * totals[5] / seen, "val_acc": val_acc, "is_best": is_best,
        "train_samples": int(totals[6]),
        "samples_per_s": totals[6] / max(sums["train_seconds"], 1e-9),  # all ranks together
        "train_seconds": sums["train_seconds"], "eval_seconds": time.perf_counter() - eval_start,
    }
    state["history"].append(record)
    state["next_epoch"], state["next_step"], state["sums"] = epoch + 1, 0, None
    if t.ctx.is_main:
        write_text(t.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
        if t.show:
            val_text = f"{val_acc:.2f}" if val_acc is not None else "-"
            print(f"[avmaster] epoch {epoch}: loss {record['train_loss_total']:.4f} train acc "
                  f"{record['train_acc']:.2f}% val acc {val_text}% lr {lr:.1e} "
                  f"{record['samples_per_s']:.1f} samples/s", file=sys.stderr)
    save_last(t)


def test_best(t: Training) -> RunResult:
    """Reload best.pt, predict the test split, write predictions.json and test_table.csv."""
    from .dataset import require_word_mask
    from .scoring import score, write_predictions

    cfg, state = t.train_cfg, t.state
    result = RunResult(run_dir=t.run_dir, best_epoch=state["best_epoch"],
                       best_val_acc=state["best_val_acc"] if cfg.eval_split else None,
                       test_acc=None, history=list(state["history"]))
    if not cfg.test_split:
        return result
    best = torch.load(t.best_path, map_location="cpu", weights_only=True)
    t.model.load_state_dict(best["model"])
    test_set = make_dataset(load_records(t.data_cfg, cfg.test_split), t.store, t.data_cfg, seed=cfg.seed)
    require_word_mask(t.model_cfg, test_set)
    pred = predict(t.model, test_set, batch_size=cfg.eval_batch_size, device=t.device, amp=cfg.amp,
                   num_workers=cfg.num_workers, features_on_device=cfg.features_on_device, progress=t.show,
                   ctx=t.ctx, desc="test")
    predictions = prediction_series(test_set.records, pred)
    result.test_acc = accuracy(test_set.records, pred)
    result.table = score(test_set.records, predictions)
    if t.ctx.is_main:
        write_predictions(result.predictions_path, predictions, dataset=t.data_cfg.dataset, split=cfg.test_split,
                          meta={"experiment": t.experiment, "seed": cfg.seed, "best_epoch": state["best_epoch"]})
        atomic_write(result.table_path, lambda f: result.table.to_csv(f), mode="w")
    return result


def finish(t: Training, result: RunResult) -> None:
    """summary.json, the final last.pt (marked finished), close the store, leave the process group."""
    if t.ctx.is_main:
        write_json(t.run_dir / "summary.json", {
            "experiment": t.experiment, "seed": t.train_cfg.seed, "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc, "test_acc": result.test_acc, "epochs": len(t.state["history"])})
    if not t.state["finished"]:
        t.state["finished"] = True
        save_last(t)
    t.store.close()
    barrier(t.ctx)
    teardown_distributed(t.ctx)


def main(argv: list[str] | None = None) -> int:
    """`python -m avmaster_core.engine train|evaluate|score ...` (the form torchrun launches)."""
    from .engine_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
