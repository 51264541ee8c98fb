"""Source side: embeddings and a (bi)directional, multi-layer LSTM, GRU, SRU or QRNN (the last two: pooled.py).

A batch whose sources all have one length runs unpacked, which PyTorch hands to oneDNN's
fused RNN on a CPU (forward and backward, fp32 and bf16; on a CPU without AVX-512 BF16 or AMX an LSTM runs in
fp32 even under bf16 autocast, oneDNN having no kernel for it there); any other batch is packed, so that padding
never enters either direction. Both give the same results; training batches can be cut to one source length each
(train.equal_source_lengths) to take the fused path."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.model.dropout import ByteDropout
from seq2seq.model.pooled import NUM_GATES as POOLED_KINDS
from seq2seq.model.pooled import PooledRNN
from seq2seq.precision import native_bf16
from seq2seq.tokenizer import PAD

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU}


class Encoder(nn.Module):
    def __init__(self, *, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 bidirectional: bool, dropout: float, rnn: str, output_dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.dropout = ByteDropout(dropout)
        self.output_dropout = ByteDropout(output_dropout)
        self.rnn: nn.Module
        if rnn in POOLED_KINDS:
            self.rnn = PooledRNN(kind=rnn, input_size=embedding_size, hidden_size=hidden_size,
                                 num_layers=num_layers, bidirectional=bidirectional, dropout=dropout)
        else:
            self.rnn = RNN_CLASSES[rnn](embedding_size, hidden_size, num_layers, batch_first=True,
                                        bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, force_pack: bool = False):
        """src: (B, S) ids, lengths: (B,) → outputs (B, S, D), final state.

        The final state is (L * dirs, B, H): h for a GRU, c for an SRU or QRNN; the pair (h, c) for an LSTM.
        An LSTM's or GRU's batch is packed unless all lengths are equal, or always with `force_pack` (to
        benchmark the two paths); SRU and QRNN layers take the lengths as they are."""
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        if isinstance(self.rnn, PooledRNN):
            outputs, final = self.rnn(embedded, lengths)
            return self.output_dropout(outputs), final
        with self._rnn_precision(embedded.device):
            outputs, final = self._run_rnn(embedded, lengths, force_pack, total_length=src.size(1))
        return self.output_dropout(outputs), final

    def _run_rnn(self, embedded: torch.Tensor, lengths: torch.Tensor, force_pack: bool, total_length: int):
        lengths_cpu = lengths.cpu()
        longest = int(lengths_cpu.max())
        if not force_pack and bool((lengths_cpu == longest).all()):  # nothing to pack: the fused path
            outputs, final = self.rnn(embedded[:, :longest])  # (B, L, D)
            outputs = nn.functional.pad(outputs, (0, 0, 0, total_length - longest))
        else:
            packed = pack_padded_sequence(embedded, lengths_cpu, batch_first=True, enforce_sorted=False)
            packed_out, final = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=total_length)
        return outputs, final

    def _rnn_precision(self, device: torch.device) -> ContextManager:
        """Autocast off for an LSTM under bf16 autocast on a CPU without native bf16: oneDNN, which runs every batch
        of one source length (packed or not), has no such kernel there ("could not create a primitive
        descriptor"), and emulated bf16 would be slower than fp32 anyway."""
        bf16 = device.type == "cpu" and torch.is_autocast_enabled("cpu") and \
            torch.get_autocast_dtype("cpu") == torch.bfloat16
        if isinstance(self.rnn, nn.LSTM) and bf16 and not native_bf16(device):
            return torch.autocast("cpu", enabled=False)
        return nullcontext()
