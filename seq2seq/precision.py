"""bfloat16 where the hardware multiplies it natively: mixed-precision training and bf16 decoding.

On CPUs with AVX-512 BF16 or AMX a bf16 matrix product runs at about 2.3 times the fp32 rate (measured
on the 2-core development machine, BENCHMARKS.md); elsewhere torch emulates it, slower than fp32.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager, Optional

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 natively (a CUDA GPU that supports it, or a CPU with AVX-512 BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up defensively
    return device.type == "cpu" and any(getattr(cpu, name, lambda: False)() for name in checks)


def mixed_precision_dtype(amp: bool, device: torch.device) -> Optional[torch.dtype]:
    """What `train.amp` trains in on `device`: bf16 where it is native, fp16 on other GPUs, else None (fp32)."""
    if not amp:
        return None
    if native_bf16(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """Products in `dtype` (the rest as torch's autocast decides) inside the block; nothing when dtype is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
