"""Segmentation: a text cut into the sentences the model translates, with the exact text between them kept,
so that translations are put back with the original whitespace and line breaks (`Segmented.join`).

A text is cut into paragraphs at line breaks, each paragraph into sentences by sentencex (Wikimedia's
sentence segmenter; chosen on accuracy, speed and size in BENCHMARKS.md, "Sentence segmentation"), each
sentence at its protected spans (URLs, numbers, ...: protect.py), and a part longer than the model handles
well into parts at clause punctuation, then between words.
Nothing is ever dropped: every character of the text is in a sentence or in a gap.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from sentencex import get_sentence_boundaries

from seq2seq.protect import translatable_parts
from seq2seq.tokenizer import clean_text

if TYPE_CHECKING:
    from seq2seq.translate import Translation

Span = tuple[int, int]  # [start, end) character offsets into the text

_LINE = re.compile(r"[^\n]+")
_CONTENT = re.compile(r"\S(?:.*\S)?", re.DOTALL)  # a span without its leading and trailing whitespace
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s(?=[–—-]\s)")  # after , ; : or before a free-standing dash
_WORD = re.compile(r"\S+")
# sentencex ends a sentence before a closing quote that follows its full stop ('... Gott." Und'): the quote
# belongs to the sentence before it.
_CLOSING = "\"'”’»«)]"
# sentencex never ends a sentence before one that starts with a number ('... Landschaft. 2 blonde Mädchen'):
# split there when the full stop follows a word of 4+ lowercase letters (not an abbreviation such as usw.,
# nor an ordinal such as 'am 3. Mai') and the number is a count (not '2.' or '2,5').
_BEFORE_NUMBER = re.compile(r"(?<=[^\W\d_A-Z]{4}[.!?])\s+(?=\d+\s)")


@dataclass
class Segmented:
    """A text as gaps[0] sentences[0] gaps[1] ... sentences[n-1] gaps[n]; `notes` say what was split further."""

    sentences: list[str]
    gaps: list[str]
    notes: list[str] = field(default_factory=list)

    def join(self, translations: Sequence[str]) -> str:
        """The text with each sentence replaced by its translation."""
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for {len(self.sentences)} sentences")
        parts = [self.gaps[0]]
        for translation, gap in zip(translations, self.gaps[1:]):
            parts += [translation, gap]
        return "".join(parts)

    def render(self, translations: Sequence["Translation"]) -> str:
        """The text with each sentence replaced by its translation's text."""
        return self.join([t.text for t in translations])

    needs_attention = False  # plain text carries no markup across the translation


def whole(text: str, fits: Optional[Callable[[str], bool]] = None,
          limit_name: str = "the model's length limit") -> Segmented:
    """The text as one sentence (corpora already one sentence per line), cut only where `fits` is false;
    whitespace-only text has none."""
    span = _strip(text, 0, len(text))
    if span is None:
        return Segmented([], [text])
    notes: list[str] = []
    return _with_gaps(text, _cut_if_long(text, span, fits, limit_name, notes), notes)


def segment(text: str, language: str, fits: Optional[Callable[[str], bool]] = None,
            limit_name: str = "the model's length limit", kept: Sequence[Span] = (),
            lines: bool = True) -> Segmented:
    """Paragraphs at line breaks (unless `lines` is false), sentences within them, each cut at its protected
    spans and at `kept` (protect.py: they stay in the gaps, as sent); any part for which `fits` is false is
    cut further.

    Lone surrogates (valid in a str, not in UTF-8) become U+FFFD first, as the tokenizer would make them."""
    text = clean_text(text)
    spans: list[Span] = []
    notes: list[str] = []
    paragraphs = [(m.start(), m.end()) for m in _LINE.finditer(text)] if lines else [(0, len(text))]
    for start, end in paragraphs:
        for sentence in _sentences(text, start, end, language):
            for part in translatable_parts(text, sentence, kept):
                spans += _cut_if_long(text, part, fits, limit_name, notes)
    return _with_gaps(text, spans, notes)


def _with_gaps(text: str, spans: list[Span], notes: list[str]) -> Segmented:
    gaps = [text[a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(text)])]
    return Segmented([text[s:e] for s, e in spans], gaps, notes)


def _cut_if_long(text: str, span: Span, fits: Optional[Callable[[str], bool]], limit_name: str,
                 notes: list[str]) -> list[Span]:
    """The sentence as it is if it fits, else its parts (and a note saying so)."""
    start, end = span
    if fits is None or fits(text[start:end]):
        return [span]
    parts = _split_long(text, start, end, fits)
    notes.append(f"a sentence of {end - start} characters, over {limit_name}, was translated in "
                 f"{len(parts)} parts cut at clause punctuation or between words")
    return parts


def _sentences(text: str, start: int, end: int, language: str) -> list[Span]:
    """The sentences of text[start:end] (one paragraph) as spans without surrounding whitespace."""
    spans: list[Span] = []
    for boundary in get_sentence_boundaries(language, text[start:end]):
        span = _strip(text, start + boundary["start_index"], start + boundary["end_index"])
        if span is None:
            continue
        if spans and spans[-1][1] == span[0] and text[span[0]] in _CLOSING:
            closing = span[0] + 1  # glue a closing quote onto the sentence it ends
            spans[-1] = (spans[-1][0], closing)
            span = _strip(text, closing, span[1])
            if span is None:
                continue
        spans += _split_before_numbers(text, span)
    return spans


def _split_before_numbers(text: str, span: Span) -> list[Span]:
    spans, start = [], span[0]
    for gap in _BEFORE_NUMBER.finditer(text, span[0], span[1]):
        spans.append((start, gap.start()))
        start = gap.end()
    return spans + [(start, span[1])]


def _strip(text: str, start: int, end: int) -> Optional[Span]:
    match = _CONTENT.search(text, start, end)
    return (match.start(), match.end()) if match else None


def _split_long(text: str, start: int, end: int, fits: Callable[[str], bool]) -> list[Span]:
    """text[start:end] in consecutive parts that fit: whole clauses where possible, else runs of words,
    else pieces of a word."""
    cuts = [m.end() for m in _CLAUSE_END.finditer(text, start, end)]
    clauses = [s for s in (_strip(text, a, b) for a, b in zip([start] + cuts, cuts + [end])) if s]
    parts: list[Span] = []
    for clause in _pack(text, clauses, fits):
        if fits(text[clause[0]:clause[1]]):
            parts.append(clause)
            continue
        words = [(m.start(), m.end()) for m in _WORD.finditer(text, *clause)]
        for run in _pack(text, words, fits):
            parts += [run] if fits(text[run[0]:run[1]]) else _halves(text, run, fits)
    return parts


def _pack(text: str, units: list[Span], fits: Callable[[str], bool]) -> list[Span]:
    """Consecutive units merged greedily while the merged span still fits; a unit too long alone stays alone."""
    packed: list[Span] = []
    for unit in units:
        if packed and fits(text[packed[-1][0]:unit[1]]):
            packed[-1] = (packed[-1][0], unit[1])
        else:
            packed.append(unit)
    return packed


def _halves(text: str, span: Span, fits: Callable[[str], bool]) -> list[Span]:
    """A span with no spaces in it (a very long word) cut in halves until each fits."""
    start, end = span
    if end - start <= 1 or fits(text[start:end]):
        return [span]
    middle = (start + end) // 2
    return _halves(text, (start, middle), fits) + _halves(text, (middle, end), fits)
