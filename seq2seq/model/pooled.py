"""SRU and QRNN: recurrences whose matrix products run once per sequence, outside the loop over time.

Both compute every gate from the layer's input alone, so all of a sequence's products are one matrix product,
and the only sequential part is element-wise, forget-gate pooling: c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t, which
runs over all time steps in one fused call (seq2seq/model/fused_step.cpp; an eager loop over time where the
kernels are unavailable).

  SRU   (Lei et al. 2017, its first form, without the later v ⊙ c_{t-1} terms):
        [z, f, r, x̂] = W x_t;  c_t = pool(z, σ(f));  h_t = σ(r) ⊙ c_t + (1 - σ(r)) ⊙ x̂  (a highway from x̂)
  QRNN  (Bradbury et al. 2017, fo-pooling, window 2):
        [z, f, o] = W [x_t; x_{t-1}];  c_t = pool(tanh(z), σ(f));  h_t = σ(o) ⊙ c_t
The backward direction of a bidirectional layer runs each sequence from its own last token (QRNN's window then
looks at x_{t+1}), so padding never enters it. Outputs are 0 on padding. The final state, like a GRU's, is one
tensor (L·dirs, B, H): c at each direction's last step, the only state these layers carry.

In the decoder (RecurrentCell), input feeding makes each step's input depend on the previous step, so the cell
runs step by step there: still without a product on its previous state, and with QRNN's window 1.
"""
from __future__ import annotations

from typing import Iterable, cast

import torch
from torch import nn

from seq2seq.model import fused
from seq2seq.model.dropout import ByteDropout

NUM_GATES = {"sru": 4, "qrnn": 3}


def forget_pool(z: torch.Tensor, f: torch.Tensor, lengths: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """z, f: (B, T, H), f after its sigmoid; lengths (B,) → c (B, T, H): the pooling over each sequence's first
    lengths[b] steps, from its last step back if `reverse`, 0 after them."""
    if fused.applies(z, f):
        return fused.forget_pool(z, f, lengths.cpu(), reverse)
    return _forget_pool_eager(z, f, lengths, reverse)


def _forget_pool_eager(z: torch.Tensor, f: torch.Tensor, lengths: torch.Tensor, reverse: bool) -> torch.Tensor:
    B, T, _ = z.shape
    valid = (torch.arange(T, device=z.device).unsqueeze(0) < lengths.to(z.device).unsqueeze(1)).unsqueeze(2)
    if reverse:  # each sequence reversed within its own length, so that its last token comes first
        order = _reversed_positions(lengths.to(z.device), T)
        z, f = z.gather(1, order.expand_as(z)), f.gather(1, order.expand_as(f))
    state, states = z.new_zeros(B, z.size(2)), []
    for z_t, f_t in zip(z.unbind(1), f.unbind(1)):
        state = f_t * state + (1 - f_t) * z_t
        states.append(state)
    c = torch.stack(states, dim=1)
    if reverse:
        c = c.gather(1, order.expand_as(c))  # the reversal is its own inverse
    return c * valid


def _reversed_positions(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T, 1) indices: position t of sequence b read from L_b - 1 - t within its length, padding in place."""
    positions = torch.arange(T, device=lengths.device).unsqueeze(0)  # (1, T)
    flipped = lengths.unsqueeze(1) - 1 - positions
    return torch.where(flipped >= 0, flipped, positions).unsqueeze(2)


class PooledLayer(nn.Module):
    """One direction of one SRU or QRNN layer: x (B, T, I) → h, c (B, T, H)."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, reverse: bool):
        super().__init__()
        self.kind, self.reverse = kind, reverse
        window = 2 if kind == "qrnn" else 1
        self.proj = nn.Linear(window * input_size, NUM_GATES[kind] * hidden_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "qrnn":  # the window: each step sees its predecessor in its direction (0 at the edge)
            neighbour = x[:, 1:] if self.reverse else x[:, :-1]
            shifted = nn.functional.pad(neighbour, (0, 0, 0, 1) if self.reverse else (0, 0, 1, 0))
            x = torch.cat([x, shifted], dim=2)
        gates = self.proj(x)  # (B, T, G·H): every product of the sequence at once
        if self.kind == "sru":
            z, f, r, highway = gates.chunk(4, dim=2)
            c = forget_pool(z, torch.sigmoid(f), lengths, self.reverse)
            r = torch.sigmoid(r)
            return r * c + (1 - r) * highway, c
        z, f, o = gates.chunk(3, dim=2)
        c = forget_pool(torch.tanh(z), torch.sigmoid(f), lengths, self.reverse)
        return torch.sigmoid(o) * c, c


class PooledRNN(nn.Module):
    """A stack of SRU or QRNN layers, (bi)directional, called as the encoder calls nn.LSTM, with lengths instead
    of packing: x (B, T, I), lengths (B,) → outputs (B, T, dirs·H), final c (L·dirs, B, H)."""

    def __init__(self, *, kind: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 dropout: float):
        super().__init__()
        directions = (False, True) if bidirectional else (False,)
        output_size = hidden_size * len(directions)
        self.layers = nn.ModuleList(
            nn.ModuleList(PooledLayer(kind, input_size if i == 0 else output_size, hidden_size, reverse)
                          for reverse in directions)
            for i in range(num_layers))
        self.dropout = ByteDropout(dropout)  # between layers, as nn.LSTM's dropout

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        valid = (torch.arange(T, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).unsqueeze(2)
        last = (lengths.to(x.device) - 1).clamp(min=0)
        rows = torch.arange(B, device=x.device)
        final = []
        x = x * valid  # QRNN's window must see 0 beyond each sequence's ends
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            outputs = []
            for direction in cast("Iterable[PooledLayer]", layer):  # what the inner ModuleList holds, typed
                h, c = direction(x, lengths)
                end = rows.new_zeros(B) if direction.reverse else last  # where each direction ends
                final.append(c[rows, end])
                outputs.append(h)
            x = torch.cat(outputs, dim=2) * valid  # 0 on padding (SRU's highway would not be)
        return x, torch.stack(final)
