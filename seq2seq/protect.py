"""Protected spans: the parts of a text that come back exactly as sent, never through the model.

URLs, e-mail addresses, @mentions (fediverse @user@host too), #hashtags, emoji, :shortcode: emoji, numbers
and the markers translation platforms put in place of placeholders (Weblate's `[X7X]`). A sentence is cut
at them (`translatable_parts`): the words between are translated, each span is kept between them. The model
is a sentence translator trained on captions; it cannot be trusted to copy a URL or a number through, and a
span that never enters it cannot be changed by it.

These are patterns over plain text (HTML is parsed before, see markup.py); `regex` (sacrebleu's own
dependency) gives the Unicode emoji properties that `re` lacks.
"""
from __future__ import annotations

from typing import Sequence

import regex

Span = tuple[int, int]  # [start, end) character offsets

_URL = r"(?:(?:https?|ftp)://|www\.)[^\s<>\"]*[^\s<>\"'.,;:!?)\]}’”»]"
_EMAIL = r"(?<![\w.+-])[\w.+-]++@[\w-]+(?:\.[\w-]+)+"  # starts only at a word start: linear time
_MARKER = r"\[X\d+X\]"  # Weblate's placeholder markers
_MENTION = r"(?<![\w@])@\w+(?:@[\w-]+(?:\.[\w-]+)+)?"
_HASHTAG = r"(?<![\w#&])#\w+"
_SHORTCODE = r"(?<![\w:]):\w{2,}:(?![\w:])"  # Mastodon's and Discourse's custom emoji
_EMOJI_ONE = r"\p{Extended_Pictographic}[\p{Emoji_Modifier}\uFE0F\u20E3]*"
_EMOJI = rf"(?:\p{{Regional_Indicator}}{{2}}|{_EMOJI_ONE}(?:\u200D{_EMOJI_ONE})*|[0-9#*]\uFE0F?\u20E3)"
_NUMBER = r"(?<!\w)[-+]?\d+(?:[.,:/]\d+)*\.?(?!\w)"  # with an ordinal's full stop ('am 3. Mai')
# Earlier alternatives win: a URL holds @, # and digits; an e-mail address holds an @mention.
_PROTECTED = regex.compile("|".join([_URL, _EMAIL, _MARKER, _MENTION, _HASHTAG, _SHORTCODE, _EMOJI, _NUMBER]))
_LETTER = regex.compile(r"\p{L}")
_LEADING = regex.compile(r"[\s,;:.!?…]*")


def protected_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """The protected spans of text[start:end], in order."""
    return [m.span() for m in _PROTECTED.finditer(text, start, len(text) if end is None else end)]


def translatable_parts(text: str, span: Span, kept: Sequence[Span] = ()) -> list[Span]:
    """text[span] cut at its protected spans (and at `kept`, spans the caller protects): the parts that hold a
    letter, without their surrounding whitespace. Everything else stays between them, as sent."""
    start, end = span
    around = sorted(protected_spans(text, start, end) + [k for k in kept if start <= k[0] < end])
    parts: list[Span] = []
    cursor = start
    for span_start, span_end in around + [(end, end)]:
        if span_start >= cursor:
            parts += _part(text, cursor, span_start, after_span=cursor != start)
        cursor = max(cursor, span_end)
    return parts


def _part(text: str, start: int, end: int, after_span: bool) -> list[Span]:
    """text[start:end] without surrounding whitespace, nor the punctuation that ends the span before it
    ('[X7X], um' translates 'um'); none when it holds no letter."""
    piece = text[start:end]
    if not _LETTER.search(piece):
        return []
    lead = _LEADING.match(piece).end() if after_span else len(piece) - len(piece.lstrip())
    stripped = piece[lead:].rstrip()
    return [(start + lead, start + lead + len(stripped))]
