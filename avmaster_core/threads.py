"""`--threads` for every command that computes: one option, one rule for the default.

    add_threads_argument(parser)   # in a command's register()
    apply_threads(args)            # once, before the command computes (cli.main does it for every command)

Default (0, "auto"): the CPU-size model (`--size cpu`, width 64) runs on one thread -- its operations are too
small to gain from a second one (measured: see results/benchmarks.md); everything else keeps torch's default
(all cores). A positive value is passed to torch.set_num_threads.
"""
from __future__ import annotations

import argparse

import torch

THREADS_HELP = ("torch CPU threads (default 0 = auto: 1 thread for --size cpu, whose small operations run "
                "fastest on one thread -- measured 0.6-1.6 s vs 27-32 s per training step at batch 32 with 2 "
                "threads on 2 shared cores, results/benchmarks.md; otherwise torch's default, all cores)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--threads N` to `parser` (no-op if it already has one)."""
    if any("--threads" in action.option_strings for action in parser._actions):
        return
    parser.add_argument("--threads", type=int, default=0, metavar="N", help=THREADS_HELP)


def threads_for(args: argparse.Namespace) -> int:
    """The thread count `args` ask for: --threads if positive, 1 for --size cpu, else 0 (leave as is)."""
    requested = int(getattr(args, "threads", 0) or 0)
    if requested < 0:
        raise ValueError(f"--threads must be >= 0 (0 = auto), got {requested}")
    if requested:
        return requested
    return 1 if getattr(args, "size", None) == "cpu" else 0


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's intra-op thread count from `args`; returns the count now in use."""
    n = threads_for(args)
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
