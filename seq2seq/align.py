"""Word alignment of a translation to its source sentence, read off the decoder's attention.

Markup inside a sentence (HTML's inline tags, a document's formatted runs) is carried across the translation
by it: each target word goes with the source word it attended to most. Placeholders in the model's input
would do the same only for a model trained to copy them, which ours (trained on plain sentences) is not; the
attention is there for every model and costs nothing extra to keep.
"""
from __future__ import annotations

from typing import Optional

import torch

from seq2seq.translate import Translation

WORD_START = "▁"  # SentencePiece's mark of a piece that begins a word


def words_of(pieces: list[str]) -> list[int]:
    """The word number of each piece (a piece that starts with ▁ starts a word)."""
    numbers, word = [], -1
    for piece in pieces:
        if piece.startswith(WORD_START) or word < 0:
            word += 1
        numbers.append(word)
    return numbers


def align_words(translation: Translation, source_words: int, target_words: int) -> list[int]:
    """For each of the translation's `target_words` words, the source word (of `source_words`) it comes from.

    Through the attention where its pieces match the words on both sides; else by relative position."""
    weights = _word_attention(translation, source_words, target_words)
    return weights.argmax(dim=1).tolist() if weights is not None else by_position(source_words, target_words)


def align_sources(translation: Translation, source_words: int, target_words: int) -> list[int]:
    """The other way round: for each source word, the target word that attended to it most."""
    weights = _word_attention(translation, source_words, target_words)
    return weights.argmax(dim=0).tolist() if weights is not None else by_position(target_words, source_words)


def by_position(source_words: int, target_words: int) -> list[int]:
    """Target word j from the source word at the same relative position."""
    if source_words == 0:
        return [0] * target_words
    return [min(source_words - 1, (2 * j + 1) * source_words // (2 * max(target_words, 1)))
            for j in range(target_words)]


def _word_attention(translation: Translation, source_words: int, target_words: int) -> Optional[torch.Tensor]:
    """The attention summed over each word's pieces: (target words, source words), or None when the pieces do
    not match the words."""
    attention = translation.attention
    if attention is None or source_words == 0 or target_words == 0:
        return None
    source_of_piece, target_of_piece = words_of(translation.source_pieces), words_of(translation.target_pieces)
    if (not source_of_piece or source_of_piece[-1] + 1 != source_words or not target_of_piece
            or target_of_piece[-1] + 1 != target_words):
        return None
    weights = attention.float()[: len(target_of_piece), : len(source_of_piece)]  # without the </s> row, column
    per_source_word = torch.zeros(len(target_of_piece), source_words).index_add_(
        1, torch.tensor(source_of_piece), weights)  # (target pieces, source words)
    return torch.zeros(target_words, source_words).index_add_(0, torch.tensor(target_of_piece), per_source_word)
