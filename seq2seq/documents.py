"""Texts in, texts out: segment each text into sentences, translate all sentences as one batch, reassemble.

The CLI and the service share this layer; the model only ever sees sentences.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal, Optional, Sequence, Union

from seq2seq.config import DecodeConfig
from seq2seq.markup import HtmlDocument, segment_html
from seq2seq.segment import Segmented, segment, whole
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import Translation, Translator


@dataclass
class Alternative:
    text: str
    score: float


@dataclass
class DocumentTranslation:
    """One text's translation: the reassembled text and each of its sentences' own translation."""

    text: str
    score: float  # the mean of its sentences' scores (0 for a text without sentences)
    sentences: list[Translation]
    source_sentences: list[str]
    notes: list[str] = field(default_factory=list)  # what was done that the user should know (long sentences cut)
    alternatives: list[Alternative] = field(default_factory=list)  # the k-th best of every sentence, joined


Format = Literal["text", "html"]
Document = Union[Segmented, HtmlDocument]  # sentences to translate, and `render` to put them back


def segment_texts(texts: Sequence[str], language: str, tokenizer: Tokenizer, max_pieces: int,
                  split: bool = True, cut_long: bool = True, format: Format = "text") -> list[Document]:
    """Each text's sentences, any longer than `max_pieces` cut in parts (unless `cut_long` is false); with
    `split` false each non-blank text is one sentence. HTML is always split (markup.py)."""
    def fits(sentence: str) -> bool:
        return len(tokenizer.encode(sentence)) <= max_pieces

    limit = f"{max_pieces} pieces (the longest sentence trained on)"
    check = fits if cut_long else None
    if format == "html":
        return [segment_html(text, language, check, limit) for text in texts]
    if not split:
        return [whole(text, check, limit) for text in texts]
    return [segment(text, language, check, limit) for text in texts]


def needs_attention(documents: Sequence[Document]) -> bool:
    """Whether any document carries markup across its translation (through the attention)."""
    return any(document.needs_attention for document in documents)


def sentences_of(segmented: Sequence[Document]) -> list[str]:
    """All sentences of all texts, in order: what is translated as one batch."""
    return [sentence for text in segmented for sentence in text.sentences]


def assemble(segmented: Sequence[Document], translations: Sequence[Translation]) -> list[DocumentTranslation]:
    """Each text rebuilt from the translations of `sentences_of(segmented)`, in the same order."""
    documents, start = [], 0
    for text in segmented:
        own = list(translations[start:start + len(text.sentences)])
        start += len(text.sentences)
        documents.append(DocumentTranslation(
            text=text.render(own), score=_mean([t.score for t in own]), sentences=own,
            source_sentences=text.sentences, notes=text.notes, alternatives=_alternatives(text, own)))
    if start != len(translations):
        raise ValueError(f"{len(translations)} translations for {start} sentences")
    return documents


def _alternatives(text: Document, own: list[Translation]) -> list[Alternative]:
    """The k-th alternative of the text: each sentence's k-th alternative (its best where it has fewer)."""
    count = max((len(t.alternatives) for t in own), default=0)
    alternatives = []
    for k in range(count):
        picks = [t.alternatives[k] if k < len(t.alternatives) else t for t in own]
        alternatives.append(Alternative(text.render(picks), _mean([p.score for p in picks])))
    return alternatives


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def translate_documents(translator: Translator, texts: Sequence[str], options: Optional[DecodeConfig] = None,
                        with_attention: bool = False, split: bool = True,
                        format: Format = "text") -> list[DocumentTranslation]:
    """Translate whole texts: all their sentences in one batch, each text put back together. Without `split`
    each line is translated whole, however long (the user's own corpus, on the user's own machine)."""
    segmented = segment_texts(texts, translator.src_lang, translator.loaded.src_tokenizer,
                              translator.max_source_pieces, split, cut_long=split or format == "html", format=format)
    attention = with_attention or needs_attention(segmented)
    return assemble(segmented, translator.translate(sentences_of(segmented), options, attention))


def translate_document_stream(translator: Translator, lines: Iterable[str], chunk_size: int = 2000,
                              **options) -> Iterator[DocumentTranslation]:
    """Translate a stream of texts (one per line) in chunks of lines, so memory stays flat."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\n"))
        if len(chunk) >= chunk_size:
            yield from translate_documents(translator, chunk, **options)
            chunk = []
    if chunk:
        yield from translate_documents(translator, chunk, **options)
