"""Decoding algorithms over a batch of sentences. Beam search arrives with the next milestone."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.data import BOS, EOS
from seq2seq.model import Seq2Seq


@dataclass
class Hypothesis:
    """One output: target ids (without BOS/EOS), total log-probability, attention (T+1, S) including EOS."""

    ids: list[int]
    score: float
    attention: torch.Tensor


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, extra: int) -> torch.Tensor:
    """Longest output per sentence, in tokens including EOS: ratio × source pieces + extra."""
    source_pieces = (src_lengths - 1).float()  # src_lengths count the source EOS
    return (source_pieces * ratio).long() + extra + 1


@torch.no_grad()
def greedy_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor,
                  max_length_ratio: float = 2.0, max_length_extra: int = 5) -> list[Hypothesis]:
    """Pick the most probable token at each step for the whole batch at once. src: (B, S)."""
    state = model.encode(src, src_lengths)
    batch_size = src.size(0)
    limits = max_output_lengths(src_lengths, max_length_ratio, max_length_extra)  # (B,)
    tokens = torch.full((batch_size,), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch_size, device=src.device)
    steps, attentions = [], []
    for t in range(int(limits.max())):
        log_probs, weights, state = model.decoder.step(tokens, state)  # (B, V), (B, S)
        at_limit = t + 1 >= limits
        log_probs[at_limit] = log_probs[at_limit].masked_fill(
            torch.arange(log_probs.size(1), device=src.device) != EOS, float("-inf"))
        best, tokens = log_probs.max(dim=-1)
        scores += best.masked_fill(finished, 0.0)
        steps.append(tokens.masked_fill(finished, EOS))
        attentions.append(weights)
        finished |= tokens == EOS
        if bool(finished.all()):
            break
    return _collect(torch.stack(steps, 1), scores, torch.stack(attentions, 1), src_lengths)


def _collect(tokens: torch.Tensor, scores: torch.Tensor, attention: torch.Tensor,
             src_lengths: torch.Tensor) -> list[Hypothesis]:
    """tokens: (B, T) ending in EOS, attention (B, T, S) → one Hypothesis per row, trimmed at EOS."""
    hyps = []
    for row, score, attn, src_len in zip(tokens.tolist(), scores.tolist(), attention.cpu(), src_lengths.tolist()):
        length = row.index(EOS) if EOS in row else len(row)
        hyps.append(Hypothesis(row[:length], score, attn[: length + 1, :src_len]))
    return hyps
