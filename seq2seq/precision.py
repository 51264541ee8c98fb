"""Numeric precision: mixed-precision training, and reduced-precision decoding.

bf16 pays where the hardware multiplies it natively (CPUs with AVX-512 BF16 or AMX, recent GPUs; figures in
BENCHMARKS.md); elsewhere torch emulates it, slower than fp32.

Decoding in int8: every matrix product of the model is in an nn.Linear or nn.LSTM/nn.GRU (the decoder's cells
are built from nn.Linear), so quantizing those two kinds covers the encoder, attention, decoder and the output
layer; weights are stored as int8 and activations quantized per batch. Embeddings stay in float: they are lookups.
Decoding in bf16: the weights stay as they are and decoding runs under autocast, so every product takes
bfloat16 inputs (the output layer's weight is cast once, in `Decoder.output_layer_for_decoding`).
"""
from __future__ import annotations

import functools
import warnings
from contextlib import nullcontext
from typing import ContextManager, Optional, TypeVar, get_args

import torch
from torch import nn

from seq2seq.config import ReducedPrecision
from seq2seq.errors import UserError


@functools.lru_cache(maxsize=None)  # asked on every encoder forward under autocast; the hardware does not change
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


def check_precision(precision: Optional[str], device: torch.device) -> None:
    """A UserError unless `precision` is None (fp32), or a reduced precision that decodes on `device`."""
    if precision is None:
        return
    if precision not in get_args(ReducedPrecision):
        raise UserError(f"unknown precision {precision!r}; "
                        f"choose one of: fp32, {', '.join(get_args(ReducedPrecision))}")
    if precision == "int8" and device.type != "cpu":
        raise UserError("--precision int8 runs on the CPU only; use --device cpu")


def decoding_dtype(precision: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype that decoding runs under: bfloat16 for "bf16", else None (no autocast)."""
    return torch.bfloat16 if precision == "bf16" else None


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def model_for_decoding(model: ModuleT, precision: Optional[str], device: torch.device) -> ModuleT:
    """The model with its products in int8 when `precision` is "int8"; unchanged otherwise (bf16 is autocast).

    In int8 it is a copy of the same class, its Linear, LSTM and GRU layers swapped for quantized ones."""
    check_precision(precision, device)
    if precision != "int8":
        return model
    # Why: torch.ao.quantization warns that it will move to torchao; the eager dynamic path is what
    # runs LSTM kernels in int8 today, and the warning would reach every CLI user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model.eval(), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)
    return quantized
