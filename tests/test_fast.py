"""The fast path (issue 7) on the CPU: graph plumbing (with the re-running stand-in for a CUDA graph), fallbacks,
bf16 numerics against fp32, the device data path and the GPU suite's report on tiny shapes.

The CUDA graph itself and the speed can only be checked on a GPU: `avmaster benchmark --gpu-suite`.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from avmaster_core.training import fast
from avmaster_core.training.benchmark import TINY_MODEL, random_batch, schedule_estimate
from avmaster_core.core.config import ModelConfig
from avmaster_core.core.dataset import Batches, FeatureBank, draw_negatives, epoch_order, iterate_batches
from avmaster_core.core.model import build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(preset: str = "official", **changes) -> ModelConfig:
    base = ModelConfig.official() if preset == "official" else ModelConfig.paper()
    return dataclasses.replace(base, **{**TINY_MODEL, **changes})


def batches(cfg, sizes=(4, 4, 4, 3), T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [random_batch(b, T, cfg, "cpu", generator=g) for b in sizes]


def train_run(cfg, data, **runner_kwargs):
    torch.manual_seed(0)
    model = build_model(cfg)
    runner = fast.FastRunner(model, fast.make_optimizer(model, lr=1e-3), **runner_kwargs)
    losses = [float(runner.train_step(b).losses["total"]) for b in data]
    return model, runner, losses


def test_captured_step_plumbing_trains_exactly_like_eager():
    """Static input buffers, warm-up steps undone, replays into the same outputs, gradients zeroed in place,
    and another batch shape (the last batch of an epoch) run eagerly on the same weights: with dropout 0 in
    fp32 the weights after every step equal plain eager training bit for bit."""
    cfg = tiny(dropout=0.0)
    data = batches(cfg)
    eager_model, _, eager_losses = train_run(cfg, data, precision="fp32", capture="eager")
    model, runner, losses = train_run(cfg, data, precision="fp32", capture="graph", graph_factory=fast.ReplayByCall)
    assert runner.train_mode == "graph" and runner.fallbacks == []
    assert runner.eager_train_steps == 1  # only the batch of 3
    assert losses == eager_losses
    assert all(torch.equal(a, b) for a, b in zip(eager_model.parameters(), model.parameters()))
    # the outputs are the graph's static buffers: the next replay overwrites them in place
    first = runner.train_step(data[0])
    kept = first.losses["total"].clone()
    second = runner.train_step(data[1])
    assert second.losses["total"] is first.losses["total"] and not torch.equal(kept, second.losses["total"])
    # weight products cached for eager inference are dropped after a replay (a real replay does not bump versions)
    model.eval()
    with torch.no_grad():
        model(data[0])
    assert any("_folded_cache" in m.__dict__ for m in model.modules())
    runner.train_step(data[0])
    assert not any("_folded_cache" in m.__dict__ for m in model.modules())


def test_captured_inference_returns_the_eager_logits_and_keeps_the_mode():
    cfg = tiny()
    torch.manual_seed(0)
    model = build_model(cfg)
    runner = fast.FastRunner(model, precision="fp32", capture="graph", graph_factory=fast.ReplayByCall)
    b = random_batch(3, 5, cfg, "cpu", negatives=False)
    model.train()
    got = runner.infer(b).clone()
    assert model.training  # restored
    assert runner.infer_mode == "graph" and len(runner._infer_graphs) == 1
    assert torch.allclose(got, fast.reference_logits(model, b), atol=1e-6, rtol=0)


def test_graph_capture_without_cuda_falls_back_to_eager_and_says_why():
    model = build_model(tiny())
    with pytest.warns(fast.FastPathWarning, match="CUDA graphs need a CUDA device"):
        runner = fast.FastRunner(model, fast.make_optimizer(model), capture="graph")
    assert runner.train_mode == runner.infer_mode == "eager"
    out = runner.train_step(batches(tiny(), sizes=(2,))[0])
    assert torch.isfinite(out.losses["total"])


@pytest.mark.slow
def test_failed_compilation_falls_back_to_eager_with_the_same_result():
    cfg = tiny(dropout=0.0)
    data = batches(cfg, sizes=(4, 4))

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    _, _, eager_losses = train_run(cfg, data, precision="fp32", capture="eager")
    with pytest.warns(fast.FastPathWarning, match="no compiler here"):
        _, runner, losses = train_run(cfg, data, precision="fp32", capture="compile", compile_backend=broken_backend)
    assert runner.train_mode == "eager" and losses == eager_losses


@pytest.mark.slow
def test_compiled_step_with_the_eager_backend_matches_eager():
    cfg = tiny(dropout=0.0)
    data = batches(cfg, sizes=(4, 4))
    _, _, eager_losses = train_run(cfg, data, precision="fp32", capture="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", fast.FastPathWarning)
        _, runner, losses = train_run(cfg, data, precision="fp32", capture="compile", compile_backend="eager")
    assert runner.train_mode == "compile"
    assert np.allclose(losses, eager_losses, rtol=1e-5)


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_bf16_logits_stay_close_to_fp32(preset):
    """bf16 autocast changes the logits by about 1 % of their scale (measured at full width too: official
    preset, B=8, T=60 on the CPU: 1.2e-2 worst sample, 8.5e-3 rel. L2); fp32 through the runner is exact."""
    cfg = tiny(preset)
    torch.manual_seed(0)
    model = build_model(cfg)
    b = random_batch(8, 6, cfg, "cpu", negatives=False, generator=torch.Generator().manual_seed(1))
    report = fast.numerics_report(model, b, precision="bf16", capture="eager")
    assert 1e-5 < report["max_row_rel"] < 3e-2  # bf16 really ran, and stayed close
    assert report["rel_l2"] < 3e-2 and report["argmax_agreement"] >= 0.75
    assert fast.compare_to_fp32(model, b, precision="fp32", capture="eager") < 1e-6


def test_logits_error_definitions():
    ref = torch.tensor([[1.0, -2.0], [10.0, 0.0]])
    err = fast.logits_error(ref + torch.tensor([[0.1, 0.0], [0.1, 0.0]]), ref)
    assert err["max_row_rel"] == pytest.approx(0.05, rel=1e-5)  # 0.1 / 2 in the first row
    assert err["max_abs"] == pytest.approx(0.1, rel=1e-5) and err["argmax_agreement"] == 1.0


def test_make_optimizer_and_learning_rate_on_cpu():
    model = build_model(tiny())
    opt = fast.make_optimizer(model, lr=3e-4, betas=[0.8, 0.9])
    assert isinstance(opt, torch.optim.Adam) and not fast.optimizer_is_capturable(opt)
    assert fast.learning_rate(opt) == pytest.approx(3e-4) and opt.param_groups[0]["betas"] == (0.8, 0.9)


def _bank(n_videos=7, n_items=23, T=4):
    g = torch.Generator().manual_seed(0)
    return FeatureBank(audio=torch.randn(n_videos, T, 128, generator=g), visual=torch.randn(n_videos, T, 768, generator=g),
                       question=torch.randn(n_items, 768, generator=g), words=torch.randn(n_items, 9, 768, generator=g),
                       video_index=torch.randint(0, n_videos, (n_items,), generator=g),
                       question_index=torch.arange(n_items), labels=torch.randint(0, 42, (n_items,), generator=g),
                       question_ids=torch.arange(100, 100 + n_items))


def test_device_order_batches_equal_the_seeded_bank_batches():
    """dataset.Batches with the order and the seeded negatives as index tensors on the bank's device gives exactly
    the batches of iterate_batches (same order, same negatives), with words padded to 77."""
    bank = _bank()
    order = torch.from_numpy(epoch_order(len(bank), 3, 2)).to(bank.device)
    ours = list(Batches(bank, order, 5, negatives=draw_negatives(len(bank), seed=3, epoch=2, device=bank.device)))
    theirs = list(iterate_batches(bank, 5, shuffle=True, seed=3, epoch=2, with_negatives=True))
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() and a["words"].shape[1] == 77
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(Batches(bank, order, 5, drop_last=True)) == 4


def test_negatives_drawn_on_the_device_are_other_items():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 500):
        neg = draw_negatives(n, device="cpu", generator=g)
        assert neg.dtype == torch.long and (neg != torch.arange(n)).all() and neg.min() >= 0 and neg.max() < n
    draws = torch.cat([draw_negatives(4, device="cpu", generator=g) for _ in range(2000)])
    counts = torch.bincount(draws, minlength=4)
    assert counts.min() > 1600  # each of 4 items is the negative of ~1/4 x 8000 draws
    with pytest.raises(ValueError, match="at least 2"):
        draw_negatives(1, device="cpu")
    seeded = draw_negatives(50, seed=1, epoch=2)
    assert torch.equal(seeded, draw_negatives(50, seed=1, epoch=2))  # a pure function of (seed, epoch)
    assert fast.time_data_path(_bank(), 5, batches=2, negatives="seeded") > 0
    assert fast.place_bank(_bank(), "cpu") is not None and fast.bank_bytes(_bank()) > 0


def test_schedule_estimate_counts_every_step():
    est = schedule_estimate(train_ms=60.0, infer_ms=6.0, batch_size=64)
    steps = 499 * 30  # ceil(31,927 / 64) per epoch
    evals = 72 * 30 + 143  # val every epoch, test once
    assert est["train_min"] == pytest.approx(steps * 0.06 / 60)
    assert est["eval_min"] == pytest.approx(evals * 0.006 / 60)


@pytest.mark.slow
def test_gpu_suite_runs_on_tiny_shapes_and_writes_the_report(tmp_path, capsys):
    """The device command's code path end to end on the CPU (--tiny): every section of the report is there."""
    from avmaster_core.cli import main

    report = tmp_path / "gpu_benchmark.md"
    assert main(["benchmark", "--gpu-suite", "--device", "cpu", "--tiny", "--suite-steps", "1",
                 "--synthetic-epochs", "1", "--report", str(report)]) == 0
    text = report.read_text()
    assert "TINY DRY RUN" in text
    for preset in ("official", "paper"):
        for path in ("eager fp32", "fast bf16"):
            assert sum(line.startswith(f"| {preset} | {path} |") for line in text.splitlines()) == 3  # 2 speed + 1 schedule
    assert "max row rel. error" in text and "Data path:" in text and "30-epoch" in text
    assert "Targets of issue 7" in text and "| fast |" in text and "| eager fp32 |" in text
    printed = capsys.readouterr().out
    assert "Targets of issue 7" in printed and f"wrote {report}" in printed


def test_cuda_suite_without_cuda_is_a_clear_error(capsys):
    from avmaster_core.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # The CLI's error policy (issue 14): one line on stderr and exit 1, no traceback.
    assert main(["benchmark", "--gpu-suite", "--device", "cuda"]) == 1
    assert "--device cuda: no CUDA GPU is visible" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--tiny"):  # a message, no traceback
        main(["benchmark", "--gpu-suite", "--device", "cpu"])
