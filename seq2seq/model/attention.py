"""Attention over encoder outputs: Bahdanau (additive) and Luong (dot, general), masked over padding.

Keys are projected once per sentence (`prepare_keys`), so each decoder step costs one query projection.
"""
from __future__ import annotations

import torch
from torch import nn

from seq2seq.model import fused


class Attention(nn.Module):
    """Base: score(query, keys) → masked softmax → weighted sum of the memory.

    Several queries may share one sentence's memory: the K beams of beam search. The memory, its keys
    and mask are then stored once per sentence and read once per step for all K of them.
    """

    def prepare_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """memory: (B, S, D) → keys in the form `score` expects."""
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query: (B, K, Hq), keys → (B, K, S) unnormalised scores."""
        raise NotImplementedError

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query: (B·K, Hq), K rows per sentence; memory: (B, S, D); mask: (B, S) true on real tokens
        → context (B·K, D), weights (B·K, S)."""
        B = memory.size(0)
        scores = self.score(query.view(B, -1, query.size(-1)), keys)  # (B, K, S)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
        context = torch.bmm(weights, memory)  # (B, K, D)
        return context.flatten(0, 1), weights.flatten(0, 1)


class BahdanauAttention(Attention):
    """score = vᵀ tanh(W_q q + W_k k)."""

    def __init__(self, query_size: int, memory_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(memory_size, hidden_size, bias=False)
        self.query_proj = nn.Linear(query_size, hidden_size)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def prepare_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        projected = self.query_proj(query)  # (B, K, A)
        if type(self.v) is nn.Linear and fused.applies(keys, projected):
            # one pass, and the (B, K, S, A) sum is never stored (the backward recomputes it)
            return fused.additive_score(keys, projected, self.v.weight.view(-1))
        # (B, 1, S, A) + (B, K, 1, A); tanh in place: the sum is the biggest tensor of a step after the logits
        return self.v(torch.tanh_(keys.unsqueeze(1) + projected.unsqueeze(2))).squeeze(-1)


class DotAttention(Attention):
    """score = qᵀ k (Luong dot); needs equal query and memory sizes."""

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (B, K, H) × (B, H, S)


class GeneralAttention(DotAttention):
    """score = qᵀ W k (Luong general), with W k precomputed per sentence."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def prepare_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # (B, S, Hq)


def build_attention(kind: str, query_size: int, memory_size: int) -> Attention:
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, query_size)
    if kind == "general":
        return GeneralAttention(query_size, memory_size)
    if kind == "dot":
        return DotAttention()
    raise ValueError(f"unknown attention {kind!r}")
