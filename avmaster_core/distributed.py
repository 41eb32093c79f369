"""Multi-process helpers for training and evaluation under torchrun (no-ops in a single process).

    ctx = setup_distributed("auto")          # joins the group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK)
    device = resolve_device("auto", ctx)     # this rank's device
    barrier(ctx); gather_objects(obj, ctx); all_sum([1.0, 2.0], ctx)
    teardown_distributed(ctx)                # only if setup created the group
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the process group (world_size 1 = a plain single process)."""

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


SINGLE_PROCESS = DistContext()


def setup_distributed(device_pref: str) -> DistContext:
    """Join the process group that torchrun describes through WORLD_SIZE/RANK/LOCAL_RANK (no-op otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE_PROCESS
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        use_cuda = device_pref != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    reduce_device = f"cuda:{local_rank}" if dist.get_backend() == "nccl" else "cpu"
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns,
                       reduce_device=reduce_device)


def teardown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and ctx.owns_group:
        torch.distributed.destroy_process_group()


def resolve_device(pref: str, ctx: DistContext = SINGLE_PROCESS) -> torch.device:
    """"auto" = cuda if available else cpu; under DDP a CUDA run uses the rank's local GPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            from .cli import AvmasterError

            raise AvmasterError(f"device {pref!r} was asked for but CUDA is not available; use --device cpu")
        if ctx.enabled:
            return torch.device("cuda", ctx.local_rank)
    elif pref != "cpu":
        raise ValueError(f"unknown device {pref!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return torch.device(pref)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        torch.distributed.barrier()


def gather_objects(obj, ctx: DistContext) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in one process)."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.reduce_device)
    torch.distributed.all_reduce(t)
    return t.tolist()
