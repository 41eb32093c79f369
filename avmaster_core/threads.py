"""`--threads` for every command that computes: one option, one rule for the default.

    add_threads_argument(parser)   # in a command's register()
    apply_threads(args)            # once, before the command computes (cli.main does it for every command)

Default (0, "auto"): the CPU-size model (`--size cpu`, width 64) runs on one thread -- its operations are too
small to gain from a second one (measured: see results/benchmarks.md); everything else keeps torch's default
(all cores). A positive value is passed to torch.set_num_threads.

`apply_threads` also keeps freed memory in the process (`keep_freed_memory`, glibc only; switch:
AVMASTER_KEEP_FREED_MEMORY=0): a training step frees and re-allocates the same large buffers every step, and
glibc's defaults hand blocks over 32 MiB (mmap) and the top of the heap back to the kernel, which zero-fills
them again page by page on the next touch.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys

import torch

THREADS_HELP = ("torch CPU threads (default 0 = auto: 1 thread for --size cpu, whose small operations run "
                "fastest on one thread -- measured 0.6-1.6 s vs 27-32 s per training step at batch 32 with 2 "
                "threads on 2 shared cores, results/benchmarks.md; otherwise torch's default, all cores)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--threads N` to `parser` (no-op if it already has one)."""
    if any("--threads" in action.option_strings for action in parser._actions):
        return
    from .options import AT_LEAST_0

    parser.add_argument("--threads", type=AT_LEAST_0, default=0, metavar="N", help=THREADS_HELP)


def threads_for(args: argparse.Namespace) -> int:
    """The thread count `args` ask for: --threads if positive, 1 for --size cpu, else 0 (leave as is)."""
    requested = int(getattr(args, "threads", 0) or 0)
    if requested < 0:
        raise ValueError(f"--threads must be >= 0 (0 = auto), got {requested}")
    if requested:
        return requested
    return 1 if getattr(args, "size", None) == "cpu" else 0


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel; True if applied.

    Measured (full-size official preset, training steps 2-3 at batch 32, T = 60, 1 thread, process
    counters): 693k / 360k minor page faults and 1.77 / 0.97 s of system time per step with glibc's
    defaults, 151k / 38k and 0.43 / 0.23 s with this (results/benchmarks.md, "Round 3"). No allocation is served by mmap (M_MMAP_MAX = 0:
    torch's 94 MB per-step temporaries at batch 32 would otherwise be mapped, faulted in and unmapped every
    step) and the heap is never trimmed; the cost is that the process keeps its peak heap until it exits.
    Off with AVMASTER_KEEP_FREED_MEMORY=0; a no-op where the C library is not glibc.
    """
    if os.environ.get("AVMASTER_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library: keep its defaults
        return False
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_TOP_PAD, 64 << 20)))  # -1: never trim


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's intra-op thread count from `args` (and `keep_freed_memory`); returns the count now in use."""
    keep_freed_memory()
    n = threads_for(args)
    cores = os.cpu_count() or 1
    if n > cores:
        print(f"warning: --threads {n} is more than the {cores} CPU core(s) of this machine; threads beyond the "
              "cores compete for them and slow torch down", file=sys.stderr)
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
