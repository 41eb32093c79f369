"""The training loop's bookkeeping in one process, without training (issue 28): the LR schedule, which epoch's
weights become best.pt (model selection on validation), the epoch record of metrics.jsonl, and what a resumed
run continues with. Validation and the checkpoint writers are replaced by recorders."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from avmaster_core.training import engine
from avmaster_core.training.distributed import SINGLE_PROCESS, DistContext
from avmaster_core.training.engine import LOSS_KEYS, LoopState, Optimisation


def _run(tmp_path, ctx=SINGLE_PROCESS, **train):
    cfg = SimpleNamespace(**{"lr": 1e-2, "lr_step": 2, "lr_gamma": 0.5, "epochs": 5, **train})
    return SimpleNamespace(ctx=ctx, train_cfg=cfg, best_checkpoint=tmp_path / "best.pt", config_record={"c": 1},
                           metrics_path=tmp_path / "metrics.jsonl", show=False, run_dir=tmp_path)


def _opt(run):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=run.train_cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=run.train_cfg.lr_step, gamma=run.train_cfg.lr_gamma)
    optimizer.step()  # as the loop does before the schedule steps (no gradient: nothing moves)
    return Optimisation(torch.nn.Linear(1, 1), None, optimizer, scheduler)


@pytest.fixture
def recorded(monkeypatch):
    """validate, save_best and save_last replaced by recorders that also check what they are given."""
    calls = {"best": [], "last": [], "args": {}}
    val = iter([])

    def validate(run, data, opt, epoch):
        assert (run, data, opt) == (calls["args"]["run"], calls["args"]["data"], calls["args"]["opt"]) and epoch >= 1
        return next(val)

    def save_best(path, model, record, *, epoch, val_acc):
        run, opt = calls["args"]["run"], calls["args"]["opt"]
        assert path == run.best_checkpoint and model is opt.model and record is run.config_record
        calls["best"].append((epoch, val_acc))

    def save_last(run, opt, state):
        assert (run, opt) == (calls["args"]["run"], calls["args"]["opt"])
        calls["last"].append(state.next_epoch)

    monkeypatch.setattr(engine, "validate", validate)
    monkeypatch.setattr(engine, "save_best", save_best)
    monkeypatch.setattr(engine, "save_last", save_last)

    def script(values, run=None, opt=None, data=None):
        nonlocal val
        val = iter(values)
        calls["args"] = {"run": run, "opt": opt, "data": data}
    calls["script"] = script
    return calls


def _sums(seen=8.0, correct=6.0, seconds=2.0):
    return {**{k: float(i + 1) * seen for i, k in enumerate(LOSS_KEYS)}, "correct": correct, "seen": seen,
            "train_seconds": seconds}


def test_best_is_the_first_epoch_of_the_highest_validation_and_ties_move_it_on(tmp_path, recorded):
    run = _run(tmp_path)
    opt, state, data = _opt(run), LoopState(), object()
    recorded["script"]([50.0, 60.0, 55.0, 60.0, 40.0], run, opt, data)
    for epoch in range(1, 6):
        engine.end_of_epoch(run, data, opt, state, epoch, _sums(), lr=opt.optimizer.param_groups[0]["lr"])
    assert recorded["best"] == [(1, 50.0), (2, 60.0), (4, 60.0)]  # a tie is taken: the later epoch
    assert (state.best_epoch, state.best_val_acc) == (4, 60.0)
    assert [r["is_best"] for r in state.history] == [True, True, False, True, False]
    assert recorded["last"] == [2, 3, 4, 5, 6] and (state.next_epoch, state.next_step, state.sums) == (6, 0, None)
    assert [json.loads(line) for line in run.metrics_path.read_text().splitlines()] == state.history


def test_without_validation_every_epoch_is_best(tmp_path, recorded):
    run, state = _run(tmp_path), LoopState()
    opt = _opt(run)
    recorded["script"]([None, None], run, opt)
    for epoch in (1, 2):
        engine.end_of_epoch(run, None, opt, state, epoch, _sums(), lr=0.1)
    assert recorded["best"] == [(1, None), (2, None)] and state.best_epoch == 2 and state.best_val_acc == -math.inf


def test_the_schedule_halves_the_rate_every_lr_step_epochs(tmp_path, recorded):
    run = _run(tmp_path, lr=0.8, lr_step=3, lr_gamma=0.25)
    opt, state = _opt(run), LoopState()
    recorded["script"]([1.0] * 7, run, opt)
    for epoch in range(1, 8):
        engine.end_of_epoch(run, None, opt, state, epoch, _sums(), lr=opt.optimizer.param_groups[0]["lr"])
    assert [r["lr"] for r in state.history] == [0.8 * 0.25 ** ((e - 1) // 3) for e in range(1, 8)]


def test_the_epoch_record(tmp_path, recorded, capsys):
    run, state = _run(tmp_path), LoopState()
    opt = _opt(run)
    recorded["script"]([42.5], run, opt)
    engine.end_of_epoch(run, None, opt, state, 1, _sums(seen=8.0, correct=6.0, seconds=0.5), lr=0.01)
    record = state.history[0]
    assert {k: record[f"train_loss_{k}"] for k in LOSS_KEYS} == {k: float(i + 1) for i, k in enumerate(LOSS_KEYS)}
    assert (record["epoch"], record["lr"], record["train_acc"], record["val_acc"]) == (1, 0.01, 75.0, 42.5)
    assert (record["train_samples"], record["samples_per_s"], record["train_seconds"]) == (8, 16.0, 0.5)
    assert 0 <= record["eval_seconds"] < 60
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == state.history
    assert capsys.readouterr().err == ""                      # progress off: nothing printed
    shown = SimpleNamespace(**{**vars(_run(tmp_path)), "show": True})
    recorded["script"]([None, 50.0], shown, opt)
    for epoch, seen in ((2, 1.0), (3, 4.0)):
        engine.end_of_epoch(shown, None, opt, state, epoch, _sums(seen=seen, correct=1.0, seconds=0.0), lr=0.01)
    assert state.history[1]["train_acc"] == 100.0 and state.history[1]["samples_per_s"] == pytest.approx(1e9)  # 1 sample in 0 s: / 1e-9
    assert capsys.readouterr().err.splitlines() == [
        "[avmaster] epoch 2: loss 5.0000 train acc 100.00% val acc -% lr 1.0e-02 1000000000.0 samples/s",
        "[avmaster] epoch 3: loss 5.0000 train acc 25.00% val acc 50.00% lr 1.0e-02 4000000000.0 samples/s"]


def test_an_epoch_that_saw_nothing_divides_by_one(tmp_path, recorded):
    run, state = _run(tmp_path), LoopState()
    opt = _opt(run)
    recorded["script"]([None], run, opt)
    engine.end_of_epoch(run, None, opt, state, 1, {**{k: 0.0 for k in LOSS_KEYS}, "correct": 0.0, "seen": 0.0,
                                                         "train_seconds": 0.0}, lr=0.01)
    assert state.history[0]["train_acc"] == 0.0 and state.history[0]["train_loss_total"] == 0.0


def test_only_rank_0_writes(tmp_path, recorded, monkeypatch):
    monkeypatch.setattr(engine, "all_sum", lambda values, ctx: [2 * v for v in values])  # two equal ranks
    run, state = _run(tmp_path, ctx=DistContext(rank=1, world_size=2)), LoopState()
    opt = _opt(run)
    recorded["script"]([70.0], run, opt)
    engine.end_of_epoch(run, None, opt, state, 1, _sums(seen=4.0, correct=1.0), lr=0.01)
    assert recorded["best"] == [] and not run.metrics_path.exists() and state.best_epoch == 1
    assert state.history[0]["train_samples"] == 8 and state.history[0]["train_acc"] == 25.0


@pytest.mark.parametrize("compile_", [False, True])
def test_adam_and_steplr_from_the_train_config(tmp_path, compile_):
    from avmaster_core.core.model import build_model
    from conftest import tiny_model

    cfg = SimpleNamespace(seed=3, lr=2e-3, betas=(0.8, 0.9), weight_decay=0.01, lr_step=4, lr_gamma=0.3,
                          compile=compile_)
    run = SimpleNamespace(train_cfg=cfg, model_cfg=tiny_model(), device=torch.device("cpu"))
    opt = engine.build_model_and_optimizer(run)
    group = opt.optimizer.param_groups[0]
    assert isinstance(opt.optimizer, torch.optim.Adam)
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-3, (0.8, 0.9), 0.01)
    assert opt.optimizer.defaults["fused"] is (None if compile_ else True)  # fused Adam on CPU (benchmark)
    assert (opt.scheduler.step_size, opt.scheduler.gamma) == (4, 0.3)
    assert opt.forward is opt.model and opt.runner is None
    assert [id(p) for p in group["params"]] == [id(p) for p in opt.model.parameters()]
    assert sum(p.numel() for p in opt.model.parameters()) == sum(p.numel() for p in build_model(tiny_model()).parameters())
    again = engine.build_model_and_optimizer(run)  # seeded: the same initial weights
    assert all(torch.equal(a, b) for a, b in zip(opt.model.state_dict().values(), again.model.state_dict().values()))


def test_the_model_goes_to_the_runs_device_and_adam_is_fused_only_on_cpu():
    from conftest import tiny_model

    cfg = SimpleNamespace(seed=0, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0, lr_step=1, lr_gamma=0.5, compile=False)
    opt = engine.build_model_and_optimizer(SimpleNamespace(train_cfg=cfg, model_cfg=tiny_model(),
                                                           device=torch.device("meta")))
    assert all(p.device.type == "meta" for p in opt.model.parameters())
    assert opt.optimizer.defaults["fused"] is None


@pytest.mark.parametrize("finished,next_epoch,epochs,still_finished", [
    (True, 6, 5, True),     # finished, same epochs: only re-scored
    (True, 6, 8, False),    # finished, more epochs asked: trains on
    (True, 5, 5, False), (False, 6, 5, False)])
def test_a_resumed_run_continues_where_last_pt_stopped(tmp_path, finished, next_epoch, epochs, still_finished,
                                                       monkeypatch, capsys):
    run = _run(tmp_path, epochs=epochs)
    opt = _opt(run)
    rngs = []
    monkeypatch.setattr(engine, "set_rng_state", rngs.append)
    state = LoopState(next_epoch=next_epoch, next_step=3, best_val_acc=61.0, best_epoch=2, history=[{"epoch": 1}],
                      sums={"seen": 1.0}, finished=finished)
    saved = {"model": opt.model.state_dict(), "optimizer": opt.optimizer.state_dict(),
             "scheduler": opt.scheduler.state_dict(), "rng": ["rank0", "rank1"], **state.as_dict()}
    restored = engine.restore(run, opt, saved)
    assert capsys.readouterr().err == f"[avmaster] resuming {tmp_path} at epoch {next_epoch}, step 3\n"
    assert restored.finished == still_finished
    assert (restored.next_epoch, restored.next_step, restored.best_val_acc, restored.best_epoch) == (next_epoch, 3, 61.0, 2)
    assert restored.history == [{"epoch": 1}] and restored.sums == {"seen": 1.0} and rngs == ["rank0"]
    for rank in (2, 3):
        engine.restore(_run(tmp_path, ctx=DistContext(rank=rank, world_size=4)), opt, saved)
        assert rngs[-1] == "rank0"  # a rank last.pt has no state for takes rank 0's
    engine.restore(_run(tmp_path, ctx=DistContext(rank=1, world_size=2)), opt, saved)
    assert rngs[-1] == "rank1" and capsys.readouterr().err == ""  # only rank 0 says it resumes
    assert engine.restore(run, opt, None) == LoopState()
