"""int8 dynamic quantization for CPU decoding: weights stored as int8, activations quantized per batch.

Every matrix product of the model is in an nn.Linear or nn.LSTM/nn.GRU (the decoder's cells are built from
nn.Linear), so quantizing those two kinds covers the encoder, attention, decoder and the output layer.
Embeddings stay in float: they are lookups, not products.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from seq2seq.errors import UserError

QUANTIZATIONS = ("int8",)


def check_quantization(quantize: Optional[str], device: torch.device) -> None:
    """A UserError unless `quantize` is None, or a known kind on the CPU."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    if device.type != "cpu":
        raise UserError("--quantize int8 runs on the CPU only; use --device cpu")


def quantize_for_decoding(model: nn.Module, quantize: Optional[str], device: torch.device) -> nn.Module:
    """The model with its products in int8 when `quantize` is "int8"; unchanged when it is None."""
    check_quantization(quantize, device)
    if quantize is None:
        return model
    # Why: torch.ao.quantization warns that it will move to torchao; the eager dynamic path is what
    # runs LSTM kernels in int8 today, and the warning would reach every CLI user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model.eval(), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)
    return quantized
