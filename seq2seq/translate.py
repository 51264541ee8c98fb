"""Translator: raw sentences in, detokenized translations out. The CLI, validation and the service use it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import torch

from seq2seq.checkpoint import LoadedModel, load_model
from seq2seq.data import collate
from seq2seq.search import Hypothesis, greedy_search
from seq2seq.tokenizer import Tokenizer


@dataclass
class Translation:
    text: str
    score: float
    source_pieces: list[str]
    target_pieces: list[str]
    attention: Optional[torch.Tensor] = None  # (target pieces + EOS, source pieces + EOS)


def resolve_device(name: str = "auto") -> torch.device:
    from seq2seq.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def length_sorted_batches(lengths: Sequence[int], batch_tokens: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, each at most `batch_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (lengths[i] + 1) * (len(batch) + 1) > batch_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _to_translation(hyp: Hypothesis, src_ids: list[int], src_tok: Tokenizer, tgt_tok: Tokenizer,
                    with_attention: bool) -> Translation:
    return Translation(
        text=tgt_tok.decode(hyp.ids), score=hyp.score,
        source_pieces=src_tok.ids_to_pieces(src_ids), target_pieces=tgt_tok.ids_to_pieces(hyp.ids),
        attention=hyp.attention if with_attention else None,
    )


@torch.no_grad()
def translate_texts(model, src_tok: Tokenizer, tgt_tok: Tokenizer, texts: Sequence[str], *,
                    device: torch.device, batch_tokens: int = 4000, max_length_ratio: float = 2.0,
                    max_length_extra: int = 5, max_source_pieces: int = 250,
                    with_attention: bool = False) -> list[Translation]:
    """Translate in length-sorted token batches and return results in input order.

    Empty or whitespace-only lines translate to the empty string.
    """
    was_training = model.training
    model.eval()
    encoded = [src_tok.encode(t.strip())[:max_source_pieces] if t.strip() else [] for t in texts]
    results: list[Optional[Translation]] = [None] * len(texts)
    for i, ids in enumerate(encoded):
        if not ids:
            results[i] = Translation("", 0.0, [], [])
    todo = [i for i, ids in enumerate(encoded) if ids]
    for batch in length_sorted_batches([len(encoded[i]) for i in todo], batch_tokens):
        indices = [todo[j] for j in batch]
        padded = collate([encoded[i] for i in indices], [[] for _ in indices])
        hyps = greedy_search(model, padded.src.to(device), padded.src_lengths.to(device),
                             max_length_ratio, max_length_extra)
        for i, hyp in zip(indices, hyps):
            results[i] = _to_translation(hyp, encoded[i], src_tok, tgt_tok, with_attention)
    model.train(was_training)
    return results  # type: ignore[return-value]


class Translator:
    """A checkpoint loaded once for translation, on the chosen device, without gradient tracking."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_tokens: int = 4000):
        self.device = resolve_device(device)
        self.loaded: LoadedModel = load_model(checkpoint, self.device)
        self.batch_tokens = batch_tokens

    @property
    def src_lang(self) -> str:
        return self.loaded.config.data.src_lang

    @property
    def tgt_lang(self) -> str:
        return self.loaded.config.data.tgt_lang

    def translate(self, texts: Sequence[str], max_length_ratio: float = 2.0,
                  with_attention: bool = False) -> list[Translation]:
        return translate_texts(self.loaded.model, self.loaded.src_tokenizer, self.loaded.tgt_tokenizer, texts,
                               device=self.device, batch_tokens=self.batch_tokens,
                               max_length_ratio=max_length_ratio, with_attention=with_attention)

    def translate_stream(self, lines: Iterable[str], chunk_size: int = 2000, **options) -> Iterator[Translation]:
        """Translate an arbitrarily long stream in chunks, so memory stays flat."""
        chunk: list[str] = []
        for line in lines:
            chunk.append(line.rstrip("\n"))
            if len(chunk) >= chunk_size:
                yield from self.translate(chunk, **options)
                chunk = []
        if chunk:
            yield from self.translate(chunk, **options)
