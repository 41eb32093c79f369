"""`avmaster benchmark`: training-step and inference speed and peak memory of both presets.

    avmaster benchmark --batch-size 32 --T 60 --device cpu --threads 2

Training step = forward (with negatives) + loss + backward + Adam step. Inference = eval forward under
torch.inference_mode. Random inputs. Each phase prints the median wall time and the median process CPU time
(user + sys of all threads) per step; on a shared machine compare CPU times. Peak memory:
torch.cuda.max_memory_allocated on GPU; on CPU the growth of the process's peak resident set (ru_maxrss)
during that phase. ru_maxrss only grows, so on CPU a phase shows only what exceeds every earlier peak
(inference runs first, then training; presets in order).

GPU suite (issue 7): everything the fast path has to show, in one run, as a markdown report:

    avmaster benchmark --gpu-suite --device cuda --report $OUT/gpu_benchmark.md
    avmaster benchmark --gpu-suite --device cpu --tiny          # the same code on tiny shapes (tests, dry runs)

It measures, for both presets at batch 32 and 64 (T = 60): training ms/step, samples/s and peak memory, and
inference ms/batch, samples/s and peak memory, for the eager fp32 path and the fast path (fast.FastRunner:
bf16 + captured step); the fast path's logits error against fp32 eager; the data path's ms per batch from a
MUSIC-AVQA-sized feature bank on the device; the estimated time of the 30-epoch MUSIC-AVQA schedule; and
(unless --no-synthetic) the test accuracy of the same short training run on the synthetic benchmark with
the eager fp32 path and with the fast path. The report is rewritten after every section, so a run cut
short still leaves what it measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from . import fast
from ..core.atomic import write_text
from ..core.config import ModelConfig, ModelConfig as MC
from ..core.dataset import FeatureBank
from ..core.model import build_model, count_parameters
from ..core.options import AT_LEAST_0, AT_LEAST_1
from ..data.synthetic import generate_synthetic
from ..core.errors import AvmasterError
from .engine import DataConfig, TrainConfig, train
from .precision import PRECISIONS, autocast, check_precision, fp32_outputs
from .threads import add_threads_argument, apply_threads


def random_batch(batch_size: int, segments: int, cfg: ModelConfig, device, generator=None, negatives=True) -> dict:
    def r(*shape):
        return torch.randn(*shape, generator=generator).to(device)
    b = {"audio": r(batch_size, segments, cfg.audio_dim), "visual": r(batch_size, segments, cfg.visual_dim),
         "question": r(batch_size, cfg.text_dim), "words": r(batch_size, 77, cfg.text_dim),
         "label": torch.randint(0, cfg.num_answers, (batch_size,), generator=generator).to(device)}
    if cfg.choice_scorer is not None:  # multiple choice (AVQA): num_answers candidates per question
        b["choices"] = r(batch_size, cfg.num_answers, cfg.text_dim)
    if negatives:
        b["neg_audio"] = r(batch_size, segments, cfg.audio_dim)
        b["neg_visual"] = r(batch_size, segments, cfg.visual_dim)
    return b


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _peak_read(device, start_kib) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kib) / 2**20


def cpu_fused_adam(device) -> bool | None:
    """Adam's `fused` flag: True on CPU (one vectorised kernel per parameter, the same update rule; measured
    3.6-5.5x faster than the per-op loop on the 50.6M-parameter official preset), torch's default elsewhere."""
    return True if torch.device(device).type == "cpu" else None


def benchmark_preset(cfg: ModelConfig, batch_size: int, segments: int, device: torch.device, steps: int = 3,
                     warmup: int = 1, precision: str = "fp32") -> dict:
    """Median seconds per training step and per inference batch, samples/s and peak memory (GiB).
    precision: "fp32" or "bf16" (precision.py), as `avmaster train --precision` runs it; bf16 also gives
    "logits_error" (fast.logits_error) of its eval logits against fp32 on the same weights and inputs."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cpu_fused_adam(device))  # as engine.train
    batch = random_batch(batch_size, segments, cfg, device)

    def train_step():  # as engine.optimizer_step
        model.train()
        with autocast(device, precision):
            out = model(batch)
        loss = model.loss(fp32_outputs(out), batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            model(batch)

    result = {"preset": cfg, "parameters": count_parameters(model)}
    if precision != "fp32":  # its eval logits against fp32's, same weights and inputs (before training moves them)
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            logits = model(batch)["logits"]
        result["logits_error"] = fast.logits_error(logits, fast.reference_logits(model, batch))
    for name, fn in (("infer", infer), ("train", train_step)):
        start = _peak_reset(device)
        times, cpu = [], []
        for i in range(warmup + steps):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        sec = sorted(times)[len(times) // 2]
        result[f"{name}_s"] = sec
        # process CPU time (all threads, user + sys): moves less than wall time on a shared machine
        result[f"{name}_cpu_s"] = sorted(cpu)[len(cpu) // 2]
        result[f"{name}_samples_per_s"] = batch_size / sec
        result[f"{name}_peak_gib"] = _peak_read(device, start)
    return result


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    if args.gpu_suite:
        return run_suite_command(args)
    device = torch.device(args.device)
    precision = args.precision or "fp32"
    if precision not in PRECISIONS:
        raise AvmasterError(f"--precision {precision}: only the --gpu-suite fast path takes it; the step "
                            f"benchmark runs {' or '.join(PRECISIONS)}")
    check_precision(precision, device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# device={device} threads={torch.get_num_threads()} batch={args.batch_size} T={args.T} "
          f"steps={args.steps} precision={precision} load1={load:.2f} torch={torch.__version__}", flush=True)
    rows = []
    for preset in args.presets:
        cfg = ModelConfig.official() if preset == "official" else ModelConfig.paper()
        r = benchmark_preset(cfg, args.batch_size, args.T, device, steps=args.steps, warmup=args.warmup,
                             precision=precision)
        r["preset"] = preset
        rows.append(r)
        print(f"{preset:9s} params={r['parameters']:,}  train {r['train_s']:.3f} s/step "
              f"(cpu {r['train_cpu_s']:.3f} s, {r['train_samples_per_s']:.1f} samples/s, "
              f"peak {r['train_peak_gib']:.2f} GiB)  infer {r['infer_s']:.3f} s/batch (cpu {r['infer_cpu_s']:.3f} s, "
              f"{r['infer_samples_per_s']:.1f} samples/s, peak {r['infer_peak_gib']:.2f} GiB)", flush=True)
        if "logits_error" in r:
            e = r["logits_error"]
            print(f"{'':9s} {precision} eval logits vs fp32: relative L2 error {e['rel_l2']:.2e}, worst sample "
                  f"{e['max_row_rel']:.2e}, same answer {100 * e['argmax_agreement']:.1f} %", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


# ===================================================================================== GPU suite (issue 7)
# MUSIC-AVQA's official schedule: 30 epochs over the 31,927 training questions at batch 64, validation on
# 4,568 questions after every epoch, the test split (9,129) once at the end (docs/released-code.md §7).
MUSIC_AVQA = {"train": 31_927, "val": 4_568, "test": 9_129, "videos": 9_288, "epochs": 30}
# The released code on one H200, fp32, T = 60 (docs/released-code.md §11): a training step costs 424 ms at batch 64
# and 414 ms at batch 32 (bound by kernel launches, not arithmetic); inference 631 samples/s at batch 64.
RELEASED_H200 = {"train_ms_b64": 424.0, "train_ms_b32": 414.0, "train_samples_per_s_b64": 151.0,
                 "infer_samples_per_s_b64": 631.0}
# Operator calls of one step of the plain official model (`operator_calls`: leaf aten ops under torch.profiler, a
# proxy for the GPU kernel launches that bound the step; width does not change them), a + b T. Counted with
# `operator_calls(T)`, one torch thread (two add 4 calls), 2026-12-05: training 12,532 / 13,120 at T = 10 / 11,
# inference 3,497 / 3,706 (32 and 12 calls fewer than before the plain model computed slot pooling's query once;
# the count was exactly linear from T = 10 up to 60, tests/test_reproduce_hours.py recounts T = 10 and 11; below
# T = 10 a few calls more, +4 at T = 2).
OPERATOR_CALLS = {"train": (6652, 588), "infer": (1407, 209)}
TARGETS = {"train_samples_per_s": 1500.0, "max_row_rel": 1e-2, "schedule_minutes": 15.0}
TINY_MODEL = dict(dim=32, focus_heads=2, focus_ffn=64, decoder_heads=2, decoder_layers=1)


def operator_calls(segments: int, kind: str = "train") -> int:
    """Leaf operator calls (aten ops without children, torch.profiler, CPU) of one eager fp32 training step
    ("train": forward, loss, backward, Adam) or one inference forward ("infer") of the plain official model at T =
    `segments` (width 32, batch 2: the count depends on neither). OPERATOR_CALLS holds the fitted a + b T."""
    cfg = ModelConfig.official(dim=32, focus_ffn=64)
    torch.manual_seed(0)
    model = build_model(cfg, fast=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(2, segments, cfg, "cpu")

    def step():
        if kind == "train":
            model.train()
            opt.zero_grad()
            model.loss(model(batch), batch)["total"].backward()
            opt.step()
        else:
            model.eval()
            with torch.inference_mode():
                model(batch)

    step()  # warm-up: lazy initialisations are not part of a step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and not e.cpu_children)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_path(cfg: ModelConfig, batch_size: int, segments: int, device: torch.device, *, path: str,
                 steps: int, precision: str = "bf16", capture: str = "auto", warmup: int = 3) -> dict:
    """Training and inference speed of one path: "eager" (fp32 eager, plain Adam: the reference) or "fast"
    (fast.FastRunner with `precision`/`capture` and fast.make_optimizer). Times cover `steps` back-to-back
    calls between two synchronisations (throughput, as a training loop sees it), after `warmup` calls that
    include the capture. Peak memory covers warm-up, capture and the timed calls."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if path == "eager":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        runner = fast.FastRunner(model, opt, precision="fp32", capture="eager")
    else:
        opt = fast.make_optimizer(model, lr=1e-4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", fast.FastPathWarning)
            runner = fast.FastRunner(model, opt, precision=precision, capture=capture, restore_after_warmup=False)
    batch = random_batch(batch_size, segments, cfg, device)
    result = {"path": path, "batch": batch_size}
    for phase, call in (("infer", lambda: runner.infer(batch)), ("train", lambda: runner.train_step(batch))):
        _free(device)
        start = _peak_reset(device)
        for _ in range(warmup):
            call()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            call()
        _sync(device)
        sec = (time.perf_counter() - t0) / steps
        result[f"{phase}_ms"] = 1000 * sec
        result[f"{phase}_samples_per_s"] = batch_size / sec
        result[f"{phase}_peak_gib"] = _peak_read(device, start)
    result["capture_train"], result["capture_infer"] = runner.train_mode, runner.infer_mode
    result["fallbacks"] = list(runner.fallbacks)
    del model, opt, runner, batch
    _free(device)
    return result


def numerics_for(cfg: ModelConfig, batch_size: int, segments: int, device: torch.device, precision: str,
                 capture: str) -> dict:
    """Fast-path logits (eval) against fp32 eager on one random batch, and the first training step's total
    loss (dropout 0, the same weights) against fp32 eager."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    batch = random_batch(batch_size, segments, cfg, device, generator=torch.Generator().manual_seed(1))
    report = fast.numerics_report(model, batch, precision=precision, capture=capture)
    # loss of one step without dropout (deterministic): eager fp32 vs the fast path, same initial weights
    no_drop = dataclasses.replace(cfg, dropout=0.0)
    losses = {}
    for name, (prec, cap) in {"fp32": ("fp32", "eager"), "fast": (precision, capture)}.items():
        torch.manual_seed(0)
        m = build_model(no_drop).to(device)
        runner = fast.FastRunner(m, fast.make_optimizer(m, lr=1e-4), precision=prec, capture=cap)
        with fast.matmul_precision("fp32"):
            losses[name] = float(runner.train_step(batch).losses["total"])
        del m, runner
    report["loss_fp32"], report["loss_fast"] = losses["fp32"], losses["fast"]
    report["loss_rel"] = abs(losses["fast"] - losses["fp32"]) / max(abs(losses["fp32"]), 1e-12)
    del model
    _free(device)
    return report


def random_bank(device: torch.device, *, videos: int, items: int, segments: int, words: int, cfg: ModelConfig):
    """A FeatureBank of random features with MUSIC-AVQA's sizes (built on the device: nothing to read)."""
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, device=device, generator=g)

    return FeatureBank(
        audio=r(videos, segments, cfg.audio_dim), visual=r(videos, segments, cfg.visual_dim),
        question=r(items, cfg.text_dim), words=r(items, words, cfg.text_dim),
        video_index=torch.randint(0, videos, (items,), device=device, generator=g),
        question_index=torch.arange(items, device=device),
        labels=torch.randint(0, cfg.num_answers, (items,), device=device, generator=g),
        question_ids=torch.arange(items, device=device))


def schedule_estimate(train_ms: float, infer_ms: float, batch_size: int = 64, sizes: dict = MUSIC_AVQA) -> dict:
    """Minutes of the 30-epoch schedule from one training step and one inference batch (model time only)."""
    steps = math.ceil(sizes["train"] / batch_size) * sizes["epochs"]
    val = math.ceil(sizes["val"] / batch_size) * sizes["epochs"]
    test = math.ceil(sizes["test"] / batch_size)
    train_min = steps * train_ms / 60_000
    eval_min = (val + test) * infer_ms / 60_000
    return {"train_min": train_min, "eval_min": eval_min, "total_min": train_min + eval_min}


def synthetic_check(device: torch.device, *, tiny: bool, epochs: int, precision: str, workdir) -> dict:
    """Test accuracy of the same short training run on the synthetic benchmark: eager fp32 vs fast path."""
    root = Path(workdir) / "synthetic"
    if tiny:
        generate_synthetic(root, num_videos=30, questions_per_video=4, T=6)
        cfg, batch, lr = MC.official(**TINY_MODEL), 16, 1e-3
    else:
        generate_synthetic(root)  # the default benchmark: 600 videos, T = 10
        cfg, batch, lr = MC.official(), 64, 2e-4
    out = {}
    for name, fast_path in (("eager fp32", False), ("fast", True)):
        tc = TrainConfig(epochs=epochs, batch_size=batch, lr=lr, device=str(device), progress=False,
                         checkpoint_every_steps=0, precision="bf16" if fast_path and precision == "bf16" else "fp32",
                         # on the CPU (dry runs) the fast path is bf16 autocast only: inductor's C++ build is slow
                         compile=fast_path and device.type == "cuda")
        t0 = time.perf_counter()
        res = train(cfg, tc, DataConfig(dataset="synthetic", root=str(root)), run_dir=Path(workdir) / name.replace(" ", "_"))
        out[name] = {"test_acc": res.test_acc, "best_val_acc": res.best_val_acc, "seconds": time.perf_counter() - t0,
                     "samples_per_s": res.history[-1]["samples_per_s"] if res.history else float("nan")}
    return out


class _Report:
    """Markdown lines, printed as they come and rewritten to `path` after every section."""

    def __init__(self, path):
        self.path, self.lines = (Path(path) if path else None), []

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)

    def flush(self) -> None:
        if self.path is not None:
            write_text(self.path, "\n".join(self.lines) + "\n")


def gpu_suite(device: torch.device, *, tiny: bool = False, steps: int = 20, precision: str = "bf16",
              capture: str = "auto", synthetic: bool = True, synthetic_epochs: int | None = None,
              report_path=None, command: str = "") -> dict:
    """Run the whole issue-7 suite on `device` and return its numbers (also printed/written as markdown)."""
    rep = _Report(report_path)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    batch_sizes, segments = ((4, 8), 6) if tiny else ((32, 64), 60)
    big = batch_sizes[-1]
    presets = {"official": ModelConfig.official(), "paper": ModelConfig.paper()}
    if tiny:
        presets = {k: dataclasses.replace(c, **TINY_MODEL) for k, c in presets.items()}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rep.add(f"### GPU suite (issue 7){' -- TINY DRY RUN, not a measurement of the real model' if tiny else ''}", "",
            f"- card: **{card}**; torch {torch.__version__} (CUDA {torch.version.cuda}); {now}",
            f"- command: `{command}`",
            f"- fast path: precision {precision}, capture {capture}; T = {segments}; random inputs; "
            f"{steps} timed steps after 3 warm-up calls (these include the capture); ms = wall time per call "
            "between two synchronisations", "")
    rep.flush()
    results: dict = {"card": card, "speed": [], "numerics": {}, "tiny": tiny}
    _suite_speed(rep, results, presets, batch_sizes, segments, device, steps, precision, capture)
    _suite_numerics(rep, results, presets, big, segments, device, precision, capture)
    _suite_data_path(rep, results, presets, big, segments, device, tiny)
    _suite_schedule(rep, results, big, precision, results["data_ms"])
    _suite_targets(rep, results, big, tiny)
    if synthetic:
        _suite_synthetic(rep, results, device, tiny, synthetic_epochs, precision)
    return results


def _suite_speed(rep, results, presets, batch_sizes, segments, device, steps, precision, capture) -> None:
    """Train and inference speed and peak memory, eager fp32 against the fast path, per preset and batch."""
    rep.add("| preset | path | batch | train ms/step | train samples/s | train peak GiB | infer ms/batch | "
            "infer samples/s | infer peak GiB | captured (train/infer) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, cfg in presets.items():
        for b in batch_sizes:
            for path in ("eager", "fast"):
                r = measure_path(cfg, b, segments, device, path=path, steps=steps, precision=precision, capture=capture)
                r["preset"] = name
                results["speed"].append(r)
                label = "eager fp32" if path == "eager" else f"fast {precision}"
                rep.add(f"| {name} | {label} | {b} | {r['train_ms']:.1f} | {r['train_samples_per_s']:,.0f} | "
                        f"{r['train_peak_gib']:.2f} | {r['infer_ms']:.1f} | {r['infer_samples_per_s']:,.0f} | "
                        f"{r['infer_peak_gib']:.2f} | {r['capture_train']}/{r['capture_infer']} |")
                rep.flush()
    fallbacks = sorted({f for r in results["speed"] for f in r["fallbacks"]})
    rep.add("", "Fallbacks: " + ("; ".join(fallbacks) if fallbacks else "none (everything captured as asked)"), "")
    rep.flush()


def _suite_numerics(rep, results, presets, big, segments, device, precision, capture) -> None:
    """The fast path's logits and loss against fp32 eager."""
    rep.add(f"Numerics (batch {big}, eval logits against fp32 eager with full-precision matmuls; "
            "one training step's total loss with dropout 0):", "",
            "| preset | max row rel. error | rel. L2 error | argmax agreement | loss fp32 | loss fast | loss rel. |",
            "|---|---:|---:|---:|---:|---:|---:|")
    for name, cfg in presets.items():
        n = numerics_for(cfg, big, segments, device, precision, capture)
        results["numerics"][name] = n
        rep.add(f"| {name} | {n['max_row_rel']:.2e} | {n['rel_l2']:.2e} | {n['argmax_agreement']:.3f} | "
                f"{n['loss_fp32']:.4f} | {n['loss_fast']:.4f} | {n['loss_rel']:.1e} |")
        rep.flush()


def _suite_data_path(rep, results, presets, big, segments, device, tiny) -> None:
    """Time to build one batch from a MUSIC-AVQA-sized feature bank on the device."""
    sizes = ({"videos": 24, "items": 96, "words": 12} if tiny else
             {"videos": MUSIC_AVQA["videos"], "items": MUSIC_AVQA["train"], "words": 40})
    bank = random_bank(device, segments=segments, cfg=presets["official"], **sizes)
    data_ms = 1000 * fast.time_data_path(bank, big, batches=50, negatives="device")
    bank_gib = fast.bank_bytes(bank) / 2**30
    del bank
    _free(device)
    results["data_ms"] = data_ms
    rep.add("", f"Data path: a feature bank of {sizes['videos']:,} videos x {segments} segments and "
                f"{sizes['items']:,} questions ({sizes['words']} word tokens kept) = {bank_gib:.2f} GiB on {device.type}; "
                f"one batch of {big} with negatives (device order, negatives drawn on the device, gather): "
                f"**{data_ms:.2f} ms**.", "")
    rep.flush()


def _suite_schedule(rep, results, big, precision, data_ms) -> None:
    """The 30-epoch MUSIC-AVQA schedule estimated from the measured step times."""
    rep.add(f"Estimated 30-epoch MUSIC-AVQA schedule (model time: {MUSIC_AVQA['train']:,} training questions per "
            f"epoch at batch {big}, validation on {MUSIC_AVQA['val']:,} after every epoch, test on "
            f"{MUSIC_AVQA['test']:,} once; data time from the line above):", "",
            "| preset | path | train min | eval min | data min | total min |", "|---|---|---:|---:|---:|---:|")
    results["schedule"] = {}
    for r in results["speed"]:
        if r["batch"] != big:
            continue
        est = schedule_estimate(r["train_ms"], r["infer_ms"], big)
        data_min = math.ceil(MUSIC_AVQA["train"] / big) * MUSIC_AVQA["epochs"] * data_ms / 60_000
        est["total_min"] += data_min
        results["schedule"][(r["preset"], r["path"])] = est
        rep.add(f"| {r['preset']} | {'eager fp32' if r['path'] == 'eager' else 'fast ' + precision} | "
                f"{est['train_min']:.1f} | {est['eval_min']:.1f} | {data_min:.1f} | **{est['total_min']:.1f}** |")
    rep.flush()


def _suite_targets(rep, results, big, tiny) -> None:
    """Issue 7's targets, checked."""
    fast_off = next(r for r in results["speed"] if r["preset"] == "official" and r["path"] == "fast" and r["batch"] == big)
    eager_off = next(r for r in results["speed"] if r["preset"] == "official" and r["path"] == "eager" and r["batch"] == big)
    sched = results["schedule"][("official", "fast")]["total_min"]
    err = results["numerics"]["official"]["max_row_rel"]
    checks = [
        (f"official fast training >= {TARGETS['train_samples_per_s']:,.0f} samples/s at batch {big}",
         fast_off["train_samples_per_s"] >= TARGETS["train_samples_per_s"],
         f"{fast_off['train_samples_per_s']:,.0f} samples/s = {fast_off['train_samples_per_s'] / RELEASED_H200['train_samples_per_s_b64']:.1f}x "
         f"the released code on an H200 (151), {eager_off['train_ms'] / fast_off['train_ms']:.1f}x our eager fp32"),
        (f"official logits within {TARGETS['max_row_rel']:.0e} relative error of fp32", err <= TARGETS["max_row_rel"],
         f"max row rel. {err:.2e}, rel. L2 {results['numerics']['official']['rel_l2']:.2e}"),
        (f"30-epoch schedule under {TARGETS['schedule_minutes']:.0f} min", sched < TARGETS["schedule_minutes"],
         f"{sched:.1f} min"),
    ]
    results["checks"] = {text: ok for text, ok, _ in checks}
    rep.add("", "Targets of issue 7" + (" (meaningless at tiny sizes)" if tiny else "") + ":", "")
    rep.add(*[f"- [{'x' if ok else ' '}] {text}: {detail}" for text, ok, detail in checks])
    rep.flush()


def _suite_synthetic(rep, results, device, tiny, synthetic_epochs, precision) -> None:
    """Accuracy on the synthetic benchmark, trained with and without the fast path."""
    epochs = synthetic_epochs or (2 if tiny else 8)
    with tempfile.TemporaryDirectory(prefix="avmaster_suite_") as work:
        syn = synthetic_check(device, tiny=tiny, epochs=epochs, precision=precision, workdir=work)
    results["synthetic"] = syn
    rep.add("", f"Synthetic benchmark ({'30 videos, T = 6, tiny model' if tiny else 'default: 600 videos, T = 10, official preset'}, "
                f"{epochs} epochs, same seed; `avmaster train` without and with "
                f"`{'--precision bf16 ' if precision == 'bf16' else ''}{'--compile' if device.type == 'cuda' else '(no --compile on the CPU)'}`):", "",
            "| path | test acc. | best val acc. | train samples/s | wall s |", "|---|---:|---:|---:|---:|")
    for name, r in syn.items():
        rep.add(f"| {name} | {r['test_acc']:.2f} % | {r['best_val_acc']:.2f} % | {r['samples_per_s']:,.0f} | "
                f"{r['seconds']:.0f} |")
    rep.flush()


def run_suite_command(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here; run the suite on a GPU machine, or use "
                         "--device cpu --tiny for a dry run of the same code")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("the GPU suite at full size on the CPU would take hours; add --tiny for a dry run")
    command = "avmaster benchmark " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["benchmark"] else sys.argv[1:])
    gpu_suite(device, tiny=args.tiny, steps=args.suite_steps, precision=args.precision or "bf16", capture=args.capture,
              synthetic=not args.no_synthetic, synthetic_epochs=args.synthetic_epochs, report_path=args.report,
              command=command)
    if args.report:
        print(f"wrote {args.report}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="training-step / inference speed and peak memory of the model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=AT_LEAST_1, default=32)
    p.add_argument("--T", type=AT_LEAST_1, default=60, help="segments per video (default 60)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_threads_argument(p)
    p.add_argument("--steps", type=AT_LEAST_1, default=3, help="measured repetitions per path; the median is reported "
                   "(e.g. --steps 5 for the median of 5 steps)")
    p.add_argument("--warmup", type=AT_LEAST_0, default=1)
    p.add_argument("--presets", nargs="+", default=["official", "paper"], choices=["official", "paper"])
    p.add_argument("--precision", default=None, choices=fast.PRECISIONS,
                   help="fp32 (default) or bf16, as `avmaster train --precision`; with --gpu-suite the fast path's "
                        "precision: bf16 (default), tf32 or fp32")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    g = p.add_argument_group("GPU suite (issue 7)")
    g.add_argument("--gpu-suite", action="store_true",
                   help="eager fp32 vs fast path, both presets, batch 32 and 64, numerics, data path, the 30-epoch "
                        "schedule estimate and a synthetic accuracy check; writes a markdown report")
    g.add_argument("--report", help="also write the suite's markdown report to this file (rewritten per section)")
    g.add_argument("--tiny", action="store_true",
                   help="suite on tiny shapes (narrow model, T=6, batch 4 and 8): a dry run of the same code on CPU")
    g.add_argument("--suite-steps", type=AT_LEAST_1, default=20, help="timed steps per measurement (default 20)")
    g.add_argument("--capture", default="auto", choices=("auto", "graph", "compile", "eager"),
                   help="fast-path capture mode (auto: CUDA graph on GPU)")
    g.add_argument("--no-synthetic", action="store_true", help="skip the synthetic-benchmark accuracy check")
    g.add_argument("--synthetic-epochs", type=AT_LEAST_1, default=None, help="epochs of each synthetic run (default 8; "
                                                                     "2 with --tiny)")
    p.set_defaults(func=run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="avmaster")
    register(parser.add_subparsers())
    a = parser.parse_args(["benchmark"] + sys.argv[1:])
    sys.exit(a.func(a))
