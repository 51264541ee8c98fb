"""Reduced precision for decoding: int8 dynamic quantization (CPU) or bfloat16 products.

int8: every matrix product of the model is in an nn.Linear or nn.LSTM/nn.GRU (the decoder's cells are built
from nn.Linear), so quantizing those two kinds covers the encoder, attention, decoder and the output layer;
weights are stored as int8 and activations quantized per batch. Embeddings stay in float: they are lookups.

bf16: the weights stay as they are and decoding runs under autocast, so every product takes bfloat16
inputs (the output layer's weight is cast once, in `Decoder.output_layer_for_decoding`). It pays where the
hardware multiplies bf16 natively (`precision.native_bf16`); elsewhere it is emulated and slower.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from seq2seq.errors import UserError

QUANTIZATIONS = ("int8", "bf16")


def check_quantization(quantize: Optional[str], device: torch.device) -> None:
    """A UserError unless `quantize` is None, or a known kind that runs on `device`."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and device.type != "cpu":
        raise UserError("--quantize int8 runs on the CPU only; use --device cpu")


def decoding_dtype(quantize: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype that decoding runs under: bfloat16 for "bf16", else None (no autocast)."""
    return torch.bfloat16 if quantize == "bf16" else None


def quantize_for_decoding(model: nn.Module, quantize: Optional[str], device: torch.device) -> nn.Module:
    """The model with its products in int8 when `quantize` is "int8"; unchanged otherwise (bf16 is autocast)."""
    check_quantization(quantize, device)
    if quantize != "int8":
        return model
    # Why: torch.ao.quantization warns that it will move to torchao; the eager dynamic path is what
    # runs LSTM kernels in int8 today, and the warning would reach every CLI user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model.eval(), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)
    return quantized
