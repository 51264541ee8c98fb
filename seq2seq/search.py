"""Decoding algorithms over a batch of sentences: greedy search and batched beam search.

Both run the whole batch as one tensor per step. Beam search keeps B×K rows (K beams per sentence);
a finished beam stays in place with its score frozen, so no Python loop ever walks over beams. A sentence
that has ended leaves the batch, so a long sentence does not make the short ones beside it cost more.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch

from seq2seq.config import DecodeConfig
from seq2seq.model import fused
from seq2seq.model.decoder import OutputLayer
from seq2seq.tokenizer import BOS, EOS, UNK


class StepDecoder(Protocol):
    def step(self, tokens: torch.Tensor, state: Any,
             output_layer: Optional[OutputLayer] = None) -> tuple[torch.Tensor, torch.Tensor, Any]: ...

    def output_layer_for_decoding(self, dtype: Optional[torch.dtype] = None) -> OutputLayer: ...


class Decodable(Protocol):
    """What search needs of a model: a Seq2Seq, or an Ensemble of them. The state `encode` returns (a
    DecoderState, or one per member) has `with_beams`, `select` and `reorder`, and `decoder.step` advances it."""

    @property
    def decoder(self) -> StepDecoder: ...

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Any: ...


@dataclass
class Hypothesis:
    """One output: target ids (without BOS/EOS), score, attention (T+1, S) including EOS.

    The score is the total log-probability divided by the length penalty (with alpha 0: the log-probability).
    """

    ids: list[int]
    score: float
    attention: torch.Tensor


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, extra: int) -> torch.Tensor:
    """Longest output per sentence, in tokens including EOS: ratio × source pieces + extra."""
    source_pieces = (src_lengths - 1).float()  # src_lengths count the source EOS
    return (source_pieces * ratio).long() + extra + 1


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha; lengths count EOS."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def best_tokens(logits: torch.Tensor, k: int, step: int, limits: torch.Tensor,
                options: DecodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k best allowed tokens as log-probabilities, best first. logits: (N, V), overwritten on the eager
    path → (N, k), (N, k).

    The same as taking the log-softmax, applying the rules (the length limits, the minimum length, no unk)
    and then the top k, but the (N, V) log-probabilities are never written: the candidates come from the
    logits, the log-normaliser is summed in place (or both in one fused kernel), and the rules apply to the
    candidates alone. Spare candidates stand in for any the rules remove.
    """
    at_limit = step + 1 >= limits  # (N,) these rows must end now
    before_min = step < options.min_length
    spare = int(options.block_unk) + int(before_min)
    if fused.applies(logits):  # one kernel for the top k and the log-normaliser (BENCHMARKS.md)
        values, ids, log_norm = fused.top_k_log_norm(logits, k + spare)  # (N, k + spare), (N, 1)
        eos_logits = logits[:, EOS].to(values.dtype)
    else:
        values, ids = top_k(logits, k + spare)  # (N, k + spare)
        eos_logits = logits[:, EOS].clone()
        log_norm = _log_sum_exp_(logits, values[:, :1])  # (N, 1)
    values = values - log_norm
    if options.block_unk:
        values = values.masked_fill(ids == UNK, float("-inf"))
    if before_min:
        values = values.masked_fill((ids == EOS) & ~at_limit.unsqueeze(1), float("-inf"))
    if bool(at_limit.any()):  # only EOS is allowed: it becomes the one finite candidate
        values[at_limit] = float("-inf")
        values[at_limit, 0] = eos_logits[at_limit] - log_norm[at_limit, 0]
        ids[at_limit, 0] = EOS
    if spare:
        values, order = values.sort(dim=1, descending=True, stable=True)
        values, ids = values[:, :k], ids.gather(1, order[:, :k])
    return values, ids


def _log_sum_exp_(logits: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """log Σ exp over each row, overwriting `logits` (N, V); row_max (N, 1) is each row's maximum → (N, 1)."""
    return logits.sub_(row_max).exp_().sum(dim=1, keepdim=True).log_().add_(row_max)


def top_k(scores: torch.Tensor, k: int, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The same values as `scores.topk(k, dim=1)`, best first, with their ids; scores: (N, V) → (N, k), (N, k).

    On a CPU, torch's top-k and max-with-index over 8,000 words cost several times a plain maximum, and
    were a large share of beam search (BENCHMARKS.md). A row's k best all lie in the k blocks with the highest
    block maximum, so this takes the maximum of each block of `block` words, and the top k of just those k blocks.
    """
    N, V = scores.shape
    num_blocks = V // block
    if num_blocks <= k:
        return scores.topk(k, dim=1)
    blocks = scores[:, : num_blocks * block].view(N, num_blocks, block)
    best_blocks = blocks.amax(dim=2).topk(k, dim=1).indices  # (N, k)
    offsets = torch.arange(block, device=scores.device)
    candidate_ids = torch.cat([(best_blocks.unsqueeze(2) * block + offsets).view(N, k * block),
                               torch.arange(num_blocks * block, V, device=scores.device).expand(N, -1)], dim=1)
    # the tail past the last block is a candidate too
    values, positions = scores.gather(1, candidate_ids).topk(k, dim=1)
    return values, candidate_ids.gather(1, positions)


@torch.inference_mode()
def greedy_search(model: Decodable, src: torch.Tensor, src_lengths: torch.Tensor,
                  options: Optional[DecodeConfig] = None,
                  output_layer: Optional[OutputLayer] = None) -> list[list[Hypothesis]]:
    """Pick the most probable token at each step for the whole batch at once. src: (B, S).

    Returns one-element lists, the same shape as beam search's n-best lists. `options`: the defaults, greedy.
    """
    if options is None:
        options = DecodeConfig(beam_size=1)
    state = model.encode(src, src_lengths)
    if output_layer is None:
        output_layer = model.decoder.output_layer_for_decoding()
    B, device = src.size(0), src.device
    limits = max_output_lengths(src_lengths, options.max_length_ratio, options.max_length_extra)  # (A,)
    active = torch.arange(B, device=device)  # the sentences still decoding
    tokens = torch.full((B,), BOS, dtype=torch.long, device=device)
    scores = torch.zeros(B, device=device)  # of all B sentences
    steps, attentions = [], []
    for t in range(int(limits.max())):  # evaluated once; limits shrink with the batch
        logits, weights, state = model.decoder.step(tokens, state, output_layer)  # (A, V), (A, S)
        best, tokens = (column.squeeze(1) for column in best_tokens(logits, 1, t, limits, options))
        scores[active] += best
        # greedy is one beam per sentence with no parents to follow: the tokens stand in for them
        step_tokens, _, step_weights = _widen(active, B, tokens.unsqueeze(1), tokens.unsqueeze(1), weights)
        steps.append(step_tokens.squeeze(1))
        attentions.append(step_weights)
        ended = tokens == EOS
        if bool(ended.any()):  # finished sentences leave the batch
            keep = ~ended
            if not bool(keep.any()):
                break
            active, tokens, limits = active[keep], tokens[keep], limits[keep]
            state = state.select(keep.nonzero().squeeze(1))
    tokens = torch.stack(steps, 1)  # (B, T)
    lengths = _lengths_with_eos(tokens)
    scores = scores / length_penalty(lengths, options.length_penalty)
    return [[h] for h in _collect(tokens, scores, torch.stack(attentions, 1), src_lengths)]


def _lengths_with_eos(tokens: torch.Tensor) -> torch.Tensor:
    """tokens: (N, T) padded with EOS after the end → length including the first EOS (N,)."""
    is_eos = (tokens == EOS).long()
    first_eos = torch.where(is_eos.any(1), is_eos.argmax(1), torch.full_like(is_eos[:, 0], tokens.size(1) - 1))
    return first_eos + 1


@torch.inference_mode()
def beam_search(model: Decodable, src: torch.Tensor, src_lengths: torch.Tensor,
                options: Optional[DecodeConfig] = None,
                output_layer: Optional[OutputLayer] = None) -> list[list[Hypothesis]]:
    """Batched beam search: all B sentences × K beams advance as one (B·K) batch per step.

    Returns for each sentence its n-best hypotheses, best first. The encoder runs once per sentence, and
    its outputs and the attention keys stay one per sentence, shared by its K beams (never reordered,
    because beams only ever inherit from beams of the same sentence). `options`: the defaults when None.
    """
    if options is None:
        options = DecodeConfig()
    B, K, device = src.size(0), options.beam_size, src.device
    state = model.encode(src, src_lengths).with_beams(K)
    if output_layer is None:
        output_layer = model.decoder.output_layer_for_decoding()
    limits = max_output_lengths(src_lengths, options.max_length_ratio, options.max_length_extra)  # (A,)
    active = torch.arange(B, device=device)  # the sentences still decoding; tensors below have one row each

    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # identical beams at the start: only the first one may expand
    lengths = torch.zeros(B, K, dtype=torch.long, device=device)  # tokens so far, EOS included
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    final_scores, final_lengths = scores.clone(), lengths.clone()  # of all B sentences, filled as they end
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (tokens, parents, attention) per step

    # A finished beam continues only with EOS at no cost, so it survives as exactly one candidate.
    eos_values = torch.full((K,), float("-inf"), device=device)
    eos_values[0] = 0.0
    for t in range(int(limits.max())):  # evaluated once; limits shrink with the batch
        A = active.numel()
        live = _live_rows(finished)  # (L,) the rows whose next token matters, or None for all
        logits, weights, state = model.decoder.step(tokens, state, _restricted(output_layer, live))  # (L, V), (A·K, S)
        # Each beam's K best tokens are the only ones that can survive, so rank just those.
        row_limits = limits.repeat_interleave(K)
        token_scores, token_ids = best_tokens(logits, K, t, row_limits if live is None else row_limits[live], options)
        token_scores, token_ids = _with_finished_beams(token_scores, token_ids, live, eos_values, A * K)
        token_scores, token_ids = token_scores.view(A, K, K), token_ids.view(A, K * K)
        candidates = scores.unsqueeze(2) + token_scores  # (A, K, K)
        cand_lengths = lengths + (~finished).long()  # (A, K) the same for every candidate of a beam
        # Rank by length-normalised score so finished and live hypotheses compare fairly.
        ranking = candidates / length_penalty(cand_lengths, options.length_penalty).unsqueeze(2)
        top_ranking, top = ranking.view(A, K * K).topk(K, dim=1)  # (A, K), best first
        parents, next_tokens = top // K, token_ids.gather(1, top)
        scores = candidates.view(A, K * K).gather(1, top)
        lengths = cand_lengths.gather(1, parents)
        finished = finished.gather(1, parents) | (next_tokens == EOS)

        first_rows = (torch.arange(A, device=device) * K).unsqueeze(1)  # (A, 1) each sentence's first row
        rows = (parents + first_rows).view(-1)  # (A·K,) the rows the surviving beams come from
        history.append(_widen(active, B, next_tokens, parents, weights.index_select(0, rows)))
        state = state.reorder(rows)
        tokens = next_tokens.view(-1)

        done = _cannot_improve(scores, lengths, finished, limits, options) | ~top_ranking.isfinite().any(1)
        if bool(done.any()):
            # A done sentence's live beams are dropped, so it ends exactly as it would alone in its batch;
            # its rows leave the batch, so the steps that follow cost only what is still decoding.
            ended = active[done]
            final_scores[ended] = scores[done].masked_fill(~finished[done], float("-inf"))
            final_lengths[ended] = lengths[done]
            keep = ~done
            if not bool(keep.any()):
                break
            active, limits = active[keep], limits[keep]
            scores, lengths, finished = scores[keep], lengths[keep], finished[keep]
            kept = keep.nonzero().squeeze(1)
            kept_rows = (kept.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
            state, tokens = state.select(kept_rows, kept), tokens.index_select(0, kept_rows)
    else:
        final_scores[active], final_lengths[active] = scores, lengths

    final = final_scores / length_penalty(final_lengths, options.length_penalty)
    return _backtrack(history, final, src_lengths, options.n_best)


def _live_rows(finished: torch.Tensor) -> Optional[torch.Tensor]:
    """Rows of beams still growing, or None when all are: a finished beam continues with EOS whatever the logits say."""
    if not bool(finished.any()):
        return None
    return (~finished).view(-1).nonzero().squeeze(1)


def _restricted(output_layer: OutputLayer, rows: Optional[torch.Tensor]) -> OutputLayer:
    """The output layer over `rows` of its input only (all rows for None): the biggest product of a step."""
    if rows is None:
        return output_layer
    return lambda output: output_layer(output.index_select(0, rows))


def _with_finished_beams(scores: torch.Tensor, ids: torch.Tensor, live: Optional[torch.Tensor],
                         eos_values: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `live` rows' (L, K) candidates as (total, K): each finished beam's row is EOS at no cost (`eos_values`)."""
    if live is None:
        return scores, ids
    all_scores = eos_values.expand(total, -1).clone().index_copy_(0, live, scores)
    return all_scores, ids.new_full((total, ids.size(1)), EOS).index_copy_(0, live, ids)


def _widen(active: torch.Tensor, B: int, tokens: torch.Tensor, parents: torch.Tensor,
           weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's (A, K) tokens and parents and (A·K, S) attention as (B, K) and (B·K, S) for all sentences.

    Sentences that have ended repeat EOS with each beam its own parent, so backtracking passes through.
    """
    A, K = tokens.shape
    if A == B:
        return tokens, parents, weights
    all_tokens = tokens.new_full((B, K), EOS)
    all_tokens[active] = tokens
    all_parents = torch.arange(K, device=tokens.device).repeat(B, 1)
    all_parents[active] = parents
    all_weights = weights.new_zeros(B, K, weights.size(1))
    all_weights[active] = weights.view(A, K, -1)
    return all_tokens, all_parents, all_weights.view(B * K, -1)


def _cannot_improve(scores: torch.Tensor, lengths: torch.Tensor, finished: torch.Tensor, limits: torch.Tensor,
                    options: DecodeConfig) -> torch.Tensor:
    """(B,) true where n_best hypotheses are finished and no live beam is expected to beat the n-th of them.

    A live beam's log-probability only falls as it grows, so with "exhaustive" stopping the best normalised
    score it can still reach is its score divided by the length penalty at the longest allowed length. That
    bound is loose: "heuristic" stopping asks only what the beam would score if it ended at the next step.
    """
    alpha = options.length_penalty
    finished_scores = (scores / length_penalty(lengths, alpha)).masked_fill(~finished, float("-inf"))
    nth_best = finished_scores.topk(options.n_best, dim=1).values[:, -1]  # (B,)
    horizon = limits.unsqueeze(1) if options.stopping == "exhaustive" else lengths + 1  # (B, 1) or (B, K)
    best_reachable = (scores / length_penalty(horizon, alpha)).masked_fill(finished, float("-inf"))
    return nth_best.isfinite() & (best_reachable.max(1).values <= nth_best)


def _backtrack(history: list, final_scores: torch.Tensor, src_lengths: torch.Tensor,
               n_best: int) -> list[list[Hypothesis]]:
    """Follow parent pointers from the last step back to the first, for all beams at once."""
    B, K = final_scores.shape
    order = final_scores.argsort(dim=1, descending=True)[:, :n_best]  # (B, N) best first
    beam = order
    token_steps, attention_steps = [], []
    for step_tokens, parents, weights in reversed(history):
        token_steps.append(step_tokens.gather(1, beam))
        attention_steps.append(weights.view(B, K, -1)[torch.arange(B, device=beam.device).unsqueeze(1), beam])
        beam = parents.gather(1, beam)
    tokens = torch.stack(token_steps[::-1], dim=2)  # (B, N, T)
    attention = torch.stack(attention_steps[::-1], dim=2)  # (B, N, T, S)
    scores = final_scores.gather(1, order)
    results = []
    for b in range(B):
        hyps = _collect(tokens[b], scores[b], attention[b], src_lengths[b].expand(n_best))
        results.append([h for h in hyps if h.score != float("-inf")])
    return results


def _collect(tokens: torch.Tensor, scores: torch.Tensor, attention: torch.Tensor,
             src_lengths: torch.Tensor) -> list[Hypothesis]:
    """tokens: (N, T) ending in EOS, attention (N, T, S) → one Hypothesis per row, trimmed at EOS."""
    hyps = []
    attention = attention.float().cpu()  # float: under bf16 decoding the weights come in bf16
    for row, score, attn, src_len in zip(tokens.tolist(), scores.tolist(), attention, src_lengths.tolist()):
        length = row.index(EOS) if EOS in row else len(row)
        hyps.append(Hypothesis(row[:length], score, attn[: length + 1, :src_len]))
    return hyps


def search(model: Decodable, src: torch.Tensor, src_lengths: torch.Tensor, options: DecodeConfig,
           output_layer: Optional[OutputLayer] = None) -> list[list[Hypothesis]]:
    """Greedy for beam size 1, beam search otherwise; n-best lists per sentence, best first.

    `output_layer` is the model's `output_layer_for_decoding()` where the caller keeps one (a Translator,
    whose weights never change); otherwise each batch builds its own.
    """
    if options.beam_size == 1:
        return greedy_search(model, src, src_lengths, options, output_layer)
    return beam_search(model, src, src_lengths, options, output_layer)
