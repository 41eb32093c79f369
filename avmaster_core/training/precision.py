"""`--precision fp32|bf16`: the arithmetic of training, evaluation and `avmaster benchmark`, one option.

    check_precision("bf16", "cpu")          # AvmasterError where the CPU has no bf16 matmul unit
    with autocast(device, "bf16"):          # matmuls in bf16; weights stay fp32 (the master copy)
        out = model(batch)
    losses = model.loss(fp32_outputs(out), batch)   # the losses in fp32

fp32 (the default) is the released code's arithmetic: every shipped run is fp32. bf16 runs the matmuls of
the forward (and so of the backward) in bfloat16 under torch.autocast: the weights, their gradients and
Adam's state stay fp32, autocast casts each weight once per forward (its cast cache) and each activation
where a matmul takes it; LayerNorm and softmax compute in fp32 inside (torch's CPU kernels accumulate
bf16 in fp32) and the losses are computed outside autocast on fp32 logits.

On a CPU, bf16 only pays where the CPU multiplies bf16 in hardware (AMX-BF16 tiles, or AVX512-BF16
dot products); elsewhere torch emulates it, slower than fp32, so it is refused with a message.
Measured on this project's 2-core machine (AMX-BF16): results/benchmarks.md.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..core.errors import AvmasterError

PRECISIONS = ("fp32", "bf16")
PRECISION_HELP = ("arithmetic of the forward and backward: fp32 (default; every shipped run) or bf16 "
                  "(autocast matmuls, fp32 master weights and losses; on a CPU only where it has AMX-BF16 or "
                  "AVX512-BF16)")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the units, fastest first


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_cpu_unit(flags: frozenset[str] | None = None) -> str | None:
    """The CPU's bf16 matmul unit ("amx_bf16" or "avx512_bf16"), None where it has none."""
    flags = cpu_flags() if flags is None else flags
    found = next((f for f in BF16_CPU_FLAGS if f in flags), None)
    if found is None and not flags:  # no /proc/cpuinfo (not Linux): ask torch's own CPU probe
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        found = "avx512_bf16" if probe is not None and probe() else None
    return found


def check_precision(precision: str, device) -> None:
    """AvmasterError unless `precision` can run on `device` (bf16: a CPU with a bf16 unit, a GPU with bf16)."""
    if precision not in PRECISIONS:
        raise AvmasterError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return
    device = torch.device(device)
    if device.type == "cpu" and bf16_cpu_unit() is None:
        raise AvmasterError("--precision bf16: this CPU has no bf16 matmul unit (neither of the flags "
                            f"{' / '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo), so torch would emulate bf16, slower "
                            "than fp32; use --precision fp32 (the default)")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AvmasterError(f"--precision bf16: the GPU {torch.cuda.get_device_name(device)} has no bf16; "
                            "use --precision fp32 (the default)")


def autocast(device, precision: str):
    """The context a forward runs in: bf16 autocast for "bf16", nothing for "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def fp32_outputs(out):
    """The model's outputs (nested dicts of tensors) with every floating tensor in fp32: what the losses
    are computed from."""
    if isinstance(out, dict):
        return {k: fp32_outputs(v) for k, v in out.items()}
    return out.float() if torch.is_tensor(out) and out.is_floating_point() else out
