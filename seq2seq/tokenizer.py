"""SentencePiece subword models: trained on the training text, stored as bytes inside checkpoints."""
from __future__ import annotations

import io
import re
from typing import Iterable, Sequence

import sentencepiece as spm

from seq2seq.config import TokenizerConfig

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the special pieces' ids, the same in every SentencePiece model we train

# Lone UTF-16 surrogates are valid in a Python str (JSON's "\ud800" decodes to one) but not in UTF-8,
# and SentencePiece raises on them; they become U+FFFD, as a UTF-8 decoder would make them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so any str can be encoded."""
    return _SURROGATE.sub("\ufffd", text)


class Tokenizer:
    """text ⇄ pieces ⇄ ids for one language side (or both, for a joint model)."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(clean_text(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode([clean_text(t) for t in texts])

    def ids_to_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self._sp.id_to_piece(i) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))


def train_tokenizer(sentences: Iterable[str], config: TokenizerConfig, vocab_size: int | None = None) -> Tokenizer:
    """Train a SentencePiece model in memory on the given sentences."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        model_type=config.type,
        vocab_size=vocab_size or config.vocab_size,
        character_coverage=config.character_coverage,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        hard_vocab_limit=False,  # small corpora may not support the requested size
        num_threads=2,
        minloglevel=2,
    )
    return Tokenizer(buffer.getvalue())


def train_tokenizers(src: Sequence[str], tgt: Sequence[str], config: TokenizerConfig) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers; the same object twice for a joint vocabulary."""
    if config.joint:
        joint = train_tokenizer(list(src) + list(tgt), config)
        return joint, joint
    return train_tokenizer(src, config), train_tokenizer(tgt, config)
