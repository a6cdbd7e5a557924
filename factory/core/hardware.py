"""What this machine's CPU computes natively, read in one place for the engines and the trainers."""

from __future__ import annotations

import os
from pathlib import Path


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512_BF16 or AMX, Arm's BF16 extension); elsewhere bf16
    is emulated, at under half float32's speed. Read from /proc/cpuinfo: torch exposes this only through private
    functions. Anything unreadable counts as no. FACTORY_CPU_BF16=0 or 1 overrides it (to measure on one machine
    what another instruction set runs)."""
    forced = os.environ.get("FACTORY_CPU_BF16")
    if forced is not None and cpuinfo is None:  # "0": behave as on a CPU without it (bench/quickstart.py --isa avx2)
        return forced.strip().lower() in ("1", "true", "yes")
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    flags = {word for line in cpuinfo.splitlines() if line.lower().startswith(("flags", "features"))
             for word in line.split(":", 1)[-1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False where torch is not installed); torch is imported only when asked."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
