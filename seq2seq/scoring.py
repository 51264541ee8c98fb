"""Forced decoding: the model's log-probability of given translations, for filtering and quality checks."""
from __future__ import annotations

from typing import Sequence

import torch

from seq2seq.batching import collate
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import PAD, Tokenizer
from seq2seq.translate import encode_sources, length_sorted_batches

DEFAULT_SCORE_BATCH_TOKENS = 4000  # padded tokens of the longer side per batch; there are no beams


@torch.inference_mode()
def score_pairs(model: Seq2Seq, src_tok: Tokenizer, tgt_tok: Tokenizer, sources: Sequence[str],
                targets: Sequence[str], device: torch.device,
                batch_tokens: int = DEFAULT_SCORE_BATCH_TOKENS) -> list[tuple[float, int]]:
    """(total log-probability, target tokens incl. EOS) for each pair, in input order.

    Pairs with an empty side score (0.0, 0). Both sides are scored whole, however long.
    """
    model.eval()
    src_ids = encode_sources(src_tok, sources)
    tgt_ids = encode_sources(tgt_tok, targets)
    results = [(0.0, 0)] * len(sources)
    todo = [i for i in range(len(sources)) if src_ids[i] and tgt_ids[i]]
    lengths = [max(len(src_ids[i]), len(tgt_ids[i])) for i in todo]
    for batch in length_sorted_batches(lengths, batch_tokens):
        indices = [todo[j] for j in batch]
        padded = collate([src_ids[i] for i in indices], [tgt_ids[i] for i in indices]).to(device)
        logits = model(padded.src, padded.src_lengths, padded.tgt_in)  # (B, T, V)
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(2, padded.tgt_out.unsqueeze(2)).squeeze(2)
        real = padded.tgt_out != PAD
        totals = log_probs.masked_fill(~real, 0.0).sum(1)
        for i, total, count in zip(indices, totals.tolist(), real.sum(1).tolist()):
            results[i] = (total, count)
    return results
