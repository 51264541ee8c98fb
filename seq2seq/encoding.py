"""Encoding chunks of pairs into flat id arrays, in worker processes. This module imports numpy, SentencePiece and
seq2seq.tokenizer, never torch, so a worker starts in a fraction of a second."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import sentencepiece as spm

from seq2seq.tokenizer import clean_text


@dataclass
class EncodedChunk:
    """A chunk of pairs as ids: each side flat with its lengths, and an 8-byte hash of each pair's text."""

    src_ids: np.ndarray
    src_lengths: np.ndarray  # (n,) int32
    tgt_ids: np.ndarray
    tgt_lengths: np.ndarray
    hashes: np.ndarray  # (n,) uint64


@dataclass(frozen=True)
class Sampling:
    """SentencePiece's sampled segmentation (subword regularisation, or BPE-dropout for a BPE model)."""

    alpha: float
    nbest_size: int


class ChunkEncoder:
    """Both sides' SentencePiece models, rebuilt from their bytes (in each worker); with `sampling`, each text
    gets a segmentation drawn at random instead of the most probable one."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes, dtype: np.dtype, sampling: Optional[Sampling] = None):
        self.src = spm.SentencePieceProcessor(model_proto=src_proto)
        self.tgt = self.src if tgt_proto == src_proto else spm.SentencePieceProcessor(model_proto=tgt_proto)
        self.dtype = dtype
        self.sampling = sampling

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> EncodedChunk:
        src_ids, src_lengths = self._side(self.src, [clean_text(s) for s, _ in pairs])
        tgt_ids, tgt_lengths = self._side(self.tgt, [clean_text(t) for _, t in pairs])
        hashes = np.array([_pair_hash(s, t) for s, t in pairs], dtype=np.uint64)
        return EncodedChunk(src_ids, src_lengths, tgt_ids, tgt_lengths, hashes)

    def _side(self, processor: spm.SentencePieceProcessor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.sampling is None:
            encoded = processor.encode(texts)
        else:
            encoded = processor.encode(texts, enable_sampling=True, alpha=self.sampling.alpha,
                                       nbest_size=self.sampling.nbest_size)
        lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int32, count=len(encoded))
        flat = np.fromiter((i for ids in encoded for i in ids), dtype=self.dtype, count=int(lengths.sum()))
        return flat, lengths


def _pair_hash(src: str, tgt: str) -> int:
    """Stable across processes and runs (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(f"{src}\t{tgt}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_worker_encoder: Optional[ChunkEncoder] = None


def start_worker(src_proto: bytes, tgt_proto: bytes, dtype: np.dtype, sampling: Optional[Sampling] = None) -> None:
    """A pool worker's initializer: the models are sent once per worker, not with every chunk."""
    global _worker_encoder
    _worker_encoder = ChunkEncoder(src_proto, tgt_proto, dtype, sampling)


def encode_in_worker(pairs: Sequence[tuple[str, str]]) -> EncodedChunk:
    assert _worker_encoder is not None, "start_worker runs first"
    return _worker_encoder(pairs)
