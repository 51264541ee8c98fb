"""Translator: raw sentences in, detokenized translations out. The CLI, validation and the service use it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from seq2seq.allocator import keep_large_blocks
from seq2seq.batching import collate
from seq2seq.checkpoint import LoadedModel, load_model
from seq2seq.config import DecodeConfig, ReducedPrecision, decoding_options
from seq2seq.ensemble import Ensemble, check_members
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.model.decoder import OutputLayer
from seq2seq.precision import autocast, check_precision, decoding_dtype, model_for_decoding
from seq2seq.search import Hypothesis, search
from seq2seq.tokenizer import Tokenizer


@dataclass
class Translation:
    text: str
    score: float  # log-probability divided by the length penalty
    source_pieces: list[str]
    target_pieces: list[str]
    attention: Optional[torch.Tensor] = None  # (target pieces + EOS, source pieces + EOS)
    alternatives: list["Translation"] = field(default_factory=list)  # the rest of the n-best list, best first


# Rows per decoding batch, counted as source tokens × beam size: every beam is a row of the decoder's batch,
# so greedy search takes 5 times the sentences of beam 5 per batch (measured best for each on a CPU).
DEFAULT_BATCH_TOKENS = 20_000


def resolve_device(name: str = "auto") -> torch.device:
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


def _to_translation(hyps: list[Hypothesis], src_ids: list[int], src_tok: Tokenizer, tgt_tok: Tokenizer,
                    with_attention: bool) -> Translation:
    """The best hypothesis as a Translation, with the others as its alternatives."""
    source_pieces = src_tok.ids_to_pieces(src_ids)
    translations = [
        Translation(text=tgt_tok.decode(h.ids), score=h.score, source_pieces=source_pieces,
                    target_pieces=tgt_tok.ids_to_pieces(h.ids), attention=h.attention if with_attention else None)
        for h in hyps
    ]
    best = translations[0]
    best.alternatives = translations[1:]
    return best


def encode_sources(src_tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Source ids per text, whole (never cut: long texts are split into sentences before, see documents.py);
    empty or whitespace-only texts give []."""
    return [src_tok.encode(t.strip()) if t.strip() else [] for t in texts]


@torch.inference_mode()
def translate_texts(model: Seq2Seq | Ensemble, src_tok: Tokenizer, tgt_tok: Tokenizer, texts: Sequence[str], *,
                    device: torch.device, options: Optional[DecodeConfig] = None,
                    batch_tokens: int = DEFAULT_BATCH_TOKENS,
                    with_attention: bool = False, output_layer: Optional[OutputLayer] = None) -> list[Translation]:
    """Translate in length-sorted batches of at most `batch_tokens` source tokens × beam size; results in input order.

    Empty or whitespace-only lines translate to the empty string. `output_layer`: see `search`. `options`: the
    defaults when None.
    """
    if options is None:
        options = DecodeConfig()
    was_training = model.training
    model.eval()
    encoded = encode_sources(src_tok, texts)
    results = [Translation("", 0.0, [], []) for _ in texts]
    todo = [i for i, ids in enumerate(encoded) if ids]
    source_tokens = max(1, batch_tokens // options.beam_size)
    for batch in length_sorted_batches([len(encoded[i]) for i in todo], source_tokens):
        indices = [todo[j] for j in batch]
        padded = collate([encoded[i] for i in indices], [[] for _ in indices])
        nbest_lists = search(model, padded.src.to(device), padded.src_lengths.to(device), options, output_layer)
        for i, hyps in zip(indices, nbest_lists):
            if hyps:
                results[i] = _to_translation(hyps, encoded[i], src_tok, tgt_tok, with_attention)
    model.train(was_training)
    return results


class Translator:
    """A checkpoint, or an ensemble of checkpoints that share their tokenizers, loaded once for translation, on
    the chosen device, without gradient tracking."""

    def __init__(self, checkpoint: str | Path | Sequence[str | Path], device: str = "auto",
                 batch_tokens: Optional[int] = None, precision: Optional[ReducedPrecision] = None):
        self.device = resolve_device(device)
        check_precision(precision, self.device)  # before the load: a bad flag is refused at once
        keep_large_blocks()
        paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
        members = [load_model(path, self.device) for path in paths]
        check_members(paths, members)
        for member in members:
            member.model = model_for_decoding(member.model, precision, self.device)
        self.loaded: LoadedModel = members[0]  # its config, tokenizers and decoding defaults speak for all
        self.model: Seq2Seq | Ensemble = members[0].model if len(members) == 1 else Ensemble([m.model for m in members])
        self.max_source_pieces = min(member.max_source_pieces for member in members)
        self.dtype = decoding_dtype(precision)  # None: as the weights are (fp32 or int8)
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS  # source tokens × beam size
        # built once: a translator's weights never change, and the service decodes many small batches
        self.output_layer = self.model.decoder.output_layer_for_decoding(self.dtype)

    @property
    def src_lang(self) -> str:
        return self.loaded.src_lang

    @property
    def tgt_lang(self) -> str:
        return self.loaded.tgt_lang

    def options(self, **overrides) -> DecodeConfig:
        """The checkpoint's decoding defaults with `overrides` (None values ignored), validated."""
        return decoding_options(self.loaded.config.decode, **overrides)

    def translate(self, texts: Sequence[str], options: Optional[DecodeConfig] = None,
                  with_attention: bool = False) -> list[Translation]:
        with autocast(self.device, self.dtype):
            return translate_texts(self.model, self.loaded.src_tokenizer, self.loaded.tgt_tokenizer, texts,
                                   device=self.device, options=options or self.options(),
                                   batch_tokens=self.batch_tokens, with_attention=with_attention,
                                   output_layer=self.output_layer)
