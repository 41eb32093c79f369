"""`avmaster benchmark`: training-step and inference speed and peak memory of both presets.

    avmaster benchmark --batch-size 32 --T 60 --device cpu --threads 2

Training step = forward (with negatives) + loss + backward + Adam step. Inference = eval forward under
torch.inference_mode. Random inputs. Peak memory: torch.cuda.max_memory_allocated on GPU; on CPU the
growth of the process's peak resident set (ru_maxrss) during that phase. ru_maxrss only grows, so on CPU a
phase shows only what exceeds every earlier peak (inference runs first, then training; presets in order).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time

import torch

from .config import ModelConfig
from .model import build_model, count_parameters


def random_batch(batch_size: int, segments: int, cfg: ModelConfig, device, generator=None, negatives=True) -> dict:
    def r(*shape):
        return torch.randn(*shape, generator=generator).to(device)
    b = {"audio": r(batch_size, segments, cfg.audio_dim), "visual": r(batch_size, segments, cfg.visual_dim),
         "question": r(batch_size, cfg.text_dim), "words": r(batch_size, 77, cfg.text_dim),
         "label": torch.randint(0, cfg.num_answers, (batch_size,), generator=generator).to(device)}
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


def benchmark_preset(cfg: ModelConfig, batch_size: int, segments: int, device: torch.device, steps: int = 3,
                     warmup: int = 1, amp: bool = False) -> dict:
    """Median seconds per training step and per inference batch, samples/s and peak memory (GiB)."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(batch_size, segments, cfg, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext())

    def train_step():
        model.train()
        with autocast:
            out = model(batch)
            loss = model.loss(out, batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode(), autocast:
            model(batch)

    result = {"preset": cfg, "parameters": count_parameters(model)}
    for name, fn in (("infer", infer), ("train", train_step)):
        start = _peak_reset(device)
        times = []
        for i in range(warmup + steps):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        sec = sorted(times)[len(times) // 2]
        result[f"{name}_s"] = sec
        result[f"{name}_samples_per_s"] = batch_size / sec
        result[f"{name}_peak_gib"] = _peak_read(device, start)
    return result


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# device={device} threads={torch.get_num_threads()} batch={args.batch_size} T={args.T} "
          f"steps={args.steps} amp={args.amp} load1={load:.2f} torch={torch.__version__}", flush=True)
    rows = []
    for preset in args.presets:
        cfg = ModelConfig.official() if preset == "official" else ModelConfig.paper()
        r = benchmark_preset(cfg, args.batch_size, args.T, device, steps=args.steps, warmup=args.warmup, amp=args.amp)
        r["preset"] = preset
        rows.append(r)
        print(f"{preset:9s} params={r['parameters']:,}  train {r['train_s']:.3f} s/step "
              f"({r['train_samples_per_s']:.1f} samples/s, peak {r['train_peak_gib']:.2f} GiB)  "
              f"infer {r['infer_s']:.3f} s/batch ({r['infer_samples_per_s']:.1f} samples/s, "
              f"peak {r['infer_peak_gib']:.2f} GiB)", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="training-step / inference speed and peak memory of the model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--T", type=int, default=60, help="segments per video (default 60)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--steps", type=int, default=3, help="measured repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--presets", nargs="+", default=["official", "paper"], choices=["official", "paper"])
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    p.set_defaults(func=run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="avmaster")
    register(parser.add_subparsers())
    a = parser.parse_args(["benchmark"] + sys.argv[1:])
    sys.exit(a.func(a))
