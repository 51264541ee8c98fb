"""Attention over encoder outputs: Bahdanau (additive) and Luong (dot, general), masked over padding.

Keys are projected once per sentence (`prepare_keys`), so each decoder step costs one query projection.
"""
from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Base: score(query, keys) → masked softmax → weighted sum of the memory."""

    def prepare_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """memory: (B, S, D) → keys in the form `score` expects."""
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query: (B, Hq), keys → (B, S) unnormalised scores."""
        raise NotImplementedError

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """query: (B, Hq), memory: (B, S, D), mask: (B, S) true on real tokens → context (B, D), weights (B, S)."""
        scores = self.score(query, keys).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


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
        # tanh in place: the sum is (B, S, A), the biggest tensor of a beam-search step after the logits
        return self.v(torch.tanh_(keys + self.query_proj(query).unsqueeze(1))).squeeze(-1)


class DotAttention(Attention):
    """score = qᵀ k (Luong dot); needs equal query and memory sizes."""

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)


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
