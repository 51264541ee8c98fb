"""HTML documents: the text of each block element translated sentence by sentence, everything else as sent.

The document is read by the standard library's HTML tokenizer (`html.parser`: lenient with broken markup,
nothing to install, and it tells where each token starts, which a tree parser does not). Each token keeps
its exact source text, so tags, attributes, entities, comments and the whitespace between blocks come
back byte for byte; only the text of sentences changes. A block is the text between two block-level tags
(`p`, `li`, `br`, `td`, ...), with its inline elements (`b`, `em`, `a`, `span`, ...) inside it:

* `code`, `pre`, `script`, `style` (and the like) and anything under `translate="no"` or
  `class="notranslate"` stay untouched, with their content;
* an inline element that holds nothing to translate (a link whose text is its URL, a Mastodon mention or
  hashtag) is kept whole, like the protected spans of plain text (protect.py);
* an inline tag inside a sentence goes where the words it wrapped went in the translation, found through
  the attention (align.py), its tags in their source order so that the markup stays well nested.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Callable, Optional, Sequence, Union

import regex

from seq2seq.align import align_sources, align_words
from seq2seq.errors import UserError
from seq2seq.protect import translatable_parts
from seq2seq.segment import Segmented, Span, segment
from seq2seq.tokenizer import clean_text
from seq2seq.translate import Translation

INLINE = frozenset("a abbr acronym b bdi bdo big cite data del dfn em font i ins label mark q s small span "
                   "strike strong sub sup time tt u".split()
                   # OpenDocument's inline elements (formats.py translates .odt and .odp text as markup)
                   + "text:span text:a text:s text:tab text:soft-page-break text:bookmark text:bookmark-start "
                     "text:bookmark-end text:reference-mark text:ruby text:ruby-base".split())
UNTOUCHED = frozenset("code kbd samp var pre script style textarea template svg math noscript".split())
INLINE_UNTOUCHED = frozenset("code kbd samp var svg math".split())  # kept where they are inside a sentence
INLINE_VOID = frozenset("img wbr input".split())  # kept in place, not a break between sentences
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
SPACES = frozenset("text:s text:tab".split())  # elements that stand for white space inside a sentence
OBJECT = "\ufffc"  # stands for a kept element in a block's plain text
_WORD = regex.compile(r"\S+")
_SPACE = regex.compile(r"(\s+)")


@dataclass
class _Token:
    kind: str  # start, startend, end, data, entity, other
    raw: str
    name: str = ""
    attrs: Sequence[tuple[str, Optional[str]]] = ()


class _Tokenizer(HTMLParser):
    """The document as tokens, each with its exact source text (their concatenation is the document)."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=False)  # entities as their own tokens, so their source is kept
        self.document = document
        self.line_starts = [0] + [i + 1 for i, c in enumerate(document) if c == "\n"]
        self.found: list[tuple[int, str, str, Sequence]] = []

    def tokens(self) -> list[_Token]:
        self.feed(self.document)
        self.close()
        starts = [offset for offset, *_ in self.found]
        ends = starts[1:] + [len(self.document)]
        tokens = [_Token(kind, self.document[a:b], name, attrs) for (a, kind, name, attrs), b in zip(self.found, ends)]
        if starts and starts[0] > 0:
            tokens.insert(0, _Token("data", self.document[:starts[0]]))
        return tokens or [_Token("data", self.document)]

    def _add(self, kind: str, name: str = "", attrs: Sequence = ()) -> None:
        line, column = self.getpos()
        offset = self.line_starts[line - 1] + column
        if self.found and self.found[-1][0] == offset:  # a token that was not one (an unfinished tag's '<')
            return
        self.found.append((offset, kind, name, attrs))

    def handle_starttag(self, tag, attrs):
        self._add("start", tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._add("startend", tag, attrs)

    def handle_endtag(self, tag):
        self._add("end", tag)

    def handle_data(self, data):
        self._add("data")

    def handle_entityref(self, name):
        self._add("entity")

    def handle_charref(self, name):
        self._add("entity")

    def handle_comment(self, data):
        self._add("other")

    def handle_decl(self, decl):
        self._add("other")

    def handle_pi(self, data):
        self._add("other")

    def unknown_decl(self, data):
        self._add("other")


@dataclass
class _Item:
    """A piece of a block: text, an inline tag (or comment) placed between words, or a kept element."""

    kind: str  # text, tag, kept
    raw: str
    text: str = ""  # text: as read (entities unescaped)
    name: str = ""  # tag: the element's name
    start: int = 0  # offset in the block's plain text
    element: Optional[int] = None  # tag: the inline element it opens or closes
    opens: bool = False
    by_punctuation: bool = False  # stays between a translated word and its punctuation (_by_punctuation)


@dataclass
class _Element:
    start: int
    end: int


@dataclass
class _Block:
    """One block's items and its plain text cut into sentences (the parts between kept spans)."""

    items: list[_Item]
    plain: str
    elements: dict[int, _Element]
    segmented: Segmented
    spans: list[Span] = field(default_factory=list)
    inner: list[list[_Item]] = field(init=False)  # each sentence's inline tags, placed by its translation

    def __post_init__(self) -> None:
        self.inner = [[i for i in self.items if i.kind == "tag" and s < i.start < e] for s, e in self.spans]

    def render(self, translations: Sequence[Translation]) -> str:
        out, done = [], set()
        placed = {id(tag) for tags in self.inner for tag in tags}
        for item in self.items:
            if item.kind == "kept" or (item.kind == "tag" and id(item) not in placed):
                out.append(item.raw)
                continue
            if item.kind == "tag":
                continue  # inside a sentence: placed by its translation
            for start, end, fragment in self._cut(item):
                if fragment is None:
                    out.append(_source_of(item, start, end))
                elif fragment not in done:
                    done.add(fragment)
                    out.append(self._translated(fragment, translations[fragment]))
        return "".join(out)

    def _cut(self, item: _Item) -> list[tuple[int, int, Optional[int]]]:
        """A text item's range split where sentences start and end: (start, end, sentence or None)."""
        start, end = item.start, item.start + len(item.text)
        pieces: list[tuple[int, int, Optional[int]]] = []
        cursor = start
        for k, (s, e) in enumerate(self.spans):
            if e <= cursor or s >= end:
                continue
            if s > cursor:
                pieces.append((cursor, s, None))
            pieces.append((max(s, cursor), min(e, end), k))
            cursor = min(e, end)
        if cursor < end:
            pieces.append((cursor, end, None))
        return pieces

    def _translated(self, fragment: int, translation: Translation) -> str:
        """The translation, escaped, with the sentence's inline tags where their words went."""
        start, end = self.spans[fragment]
        source_words = [(m.start(), m.end()) for m in _WORD.finditer(self.plain, start, end)]
        parts = _SPACE.split(translation.text.strip()) if translation.text.strip() else []
        words, separators = parts[0::2], parts[1::2]
        aligned = align_words(translation, len(source_words), len(words))
        sources = align_sources(translation, len(source_words), len(words))
        placed: dict[int, list[_Item]] = {}  # target word index → the tags placed before it
        opened_at: dict[int, int] = {}  # element → the target index its opening tag went to
        at_least = 0
        for tag in self.inner[fragment]:  # in source order, never before an earlier one: well nested
            index = self._target_index(tag, (start, end), source_words, aligned, sources, len(words))
            at_least = max(at_least, index)
            if tag.element is None:
                pass
            elif tag.opens:
                opened_at[tag.element] = at_least
            elif opened_at.get(tag.element, len(words)) == at_least < len(words):
                # its words were left untranslated and the tags before pushed it past them: it wraps the
                # next word rather than nothing (an empty link or bold is invisible to the reader)
                at_least += 1
            placed.setdefault(at_least, []).append(tag)
        groups = [_closing_then_opening(placed.get(i, [])) for i in range(len(words) + 1)]
        out = [_raw(groups[0][0])]
        for j, word in enumerate(words):
            if j > 0:
                out.append(separators[j - 1])
            out.append(_wrapped(word, opening=groups[j][1], closing=groups[j + 1][0]))
        out.append(_raw(groups[-1][1]))
        return "".join(out)

    def _target_index(self, tag: _Item, sentence: Span, source_words: list[Span], aligned: list[int],
                      sources: list[int], target_words: int) -> int:
        """Where the tag goes among the translation's words: before the first word of what it opens, after the
        last word of what it closes (the target words aligned to its words, else those its words attended to
        most); by position when it wraps no word."""
        element = self.elements.get(tag.element) if tag.element is not None else None
        if element is not None:
            if tag.opens:  # what it wraps within this sentence: from the tag on, or up to it
                low, high = tag.start, min(element.end, sentence[1])
            else:
                low, high = max(element.start, sentence[0]), tag.start
            covered = {w for w, (a, b) in enumerate(source_words) if a < high and b > low}
            run = (_longest_run([j for j, w in enumerate(aligned) if w in covered])
                   or _longest_run(sorted({sources[w] for w in covered})))
            if run:
                return run[0] if tag.opens else run[1] + 1
        before = sum(1 for _, b in source_words if b <= tag.start)
        return next((j for j, w in enumerate(aligned) if w >= before), target_words)


_EDGE = regex.compile(r"^(\W*)(.*?)(\W*)$", regex.DOTALL)


def _closing_then_opening(group: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """The tags placed between two words: those closing the word before, then those opening the next."""
    first_open = next((k for k, tag in enumerate(group) if tag.opens), len(group))
    return group[:first_open], group[first_open:]


def _raw(tags: list[_Item]) -> str:
    return "".join(tag.raw for tag in tags)


def _wrapped(word: str, opening: list[_Item], closing: list[_Item]) -> str:
    """A translated word, escaped, with the tags that open before it and close after it; a tag that sat between
    a word and its punctuation ('„<b>Hund</b>.') goes between them again."""
    lead, core, trail = _EDGE.match(word).groups()
    if not core:
        return _raw(opening) + html.escape(word, quote=False) + _raw(closing)
    inner_open = [t for t in opening if t.by_punctuation]
    inner_close = [t for t in closing if t.by_punctuation]
    outer_open = [t for t in opening if not t.by_punctuation]
    outer_close = [t for t in closing if not t.by_punctuation]
    return "".join([_raw(outer_open), html.escape(lead, quote=False), _raw(inner_open), html.escape(core, quote=False),
                    _raw(inner_close), html.escape(trail, quote=False), _raw(outer_close)])


def _longest_run(indices: list[int]) -> Optional[tuple[int, int]]:
    """The longest stretch of consecutive target words among `indices` (first and last), the first of equals:
    one stray word aligned far away does not stretch a tag over the words between."""
    best: Optional[tuple[int, int]] = None
    for k, index in enumerate(indices):
        if k == 0 or index != indices[k - 1] + 1:
            start = index
        if best is None or index - start > best[1] - best[0]:
            best = (start, index)
    return best


def _source_of(item: _Item, start: int, end: int) -> str:
    """The source text of part of a text item (an entity is kept whole, with its first character)."""
    if len(item.raw) == len(item.text):  # plain text: its source is itself
        return item.raw[start - item.start:end - item.start]
    return item.raw if start == item.start else ""


@dataclass
class HtmlDocument:
    """An HTML text as raw source and blocks; `sentences` are what the model translates, `render` puts the
    translations back into the markup."""

    parts: list[Union[str, _Block]]
    notes: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        return [s for block in self._blocks() for s in block.segmented.sentences]

    @property
    def needs_attention(self) -> bool:
        """Whether any sentence has inline tags inside it (placed through the attention)."""
        return any(tags for block in self._blocks() for tags in block.inner)

    def render(self, translations: Sequence[Translation]) -> str:
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for {len(self.sentences)} sentences")
        out, start = [], 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            count = len(part.spans)
            out.append(part.render(translations[start:start + count]))
            start += count
        return "".join(out)

    def _blocks(self) -> list[_Block]:
        return [part for part in self.parts if isinstance(part, _Block)]


def segment_html(document: str, language: str, fits: Optional[Callable[[str], bool]] = None,
                 limit_name: str = "the model's length limit") -> HtmlDocument:
    """The document's blocks cut into sentences (`segment` on each block's text, at its kept spans too).

    Lone surrogates (valid in a str, not in UTF-8) become U+FFFD first, so that the answer can be encoded."""
    try:
        tokens = _Tokenizer(clean_text(document)).tokens()
    except Exception as err:  # noqa: BLE001 - html.parser is lenient; whatever it still refuses is the client's
        raise UserError(f"the HTML could not be read: {err}") from None
    parts: list[Union[str, _Block]] = []
    notes: list[str] = []
    for group in _group(tokens):
        if isinstance(group, str):
            parts.append(group)
        elif group:
            block = _block(group, language, fits, limit_name)
            notes += block.segmented.notes
            parts.append(block)
    return HtmlDocument(parts, notes)


def _untouched(token: _Token) -> bool:
    attrs = dict(token.attrs)
    return (token.name in UNTOUCHED or (attrs.get("translate") or "").lower() == "no"
            or "notranslate" in (attrs.get("class") or "").split())


def _subtree_end(tokens: list[_Token], start: int, inline: bool) -> int:
    """The index after the element opened at tokens[start] closes (an inline one at the next block tag)."""
    opened = tokens[start]
    if opened.kind == "startend" or opened.name in VOID:
        return start + 1
    depth = 0
    for i in range(start, len(tokens)):
        token = tokens[i]
        if inline and i > start and token.kind in ("start", "startend", "end") and _breaks(token.name):
            return i
        if token.name == opened.name and token.kind == "start":
            depth += 1
        elif token.name == opened.name and token.kind == "end":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(tokens)


def _breaks(name: str) -> bool:
    """Whether a tag ends a block (any element that is neither inline nor kept inside a sentence)."""
    return name not in INLINE and name not in INLINE_UNTOUCHED and name not in INLINE_VOID


def _group(tokens: list[_Token]) -> list[Union[str, list[_Item]]]:
    """Raw source between blocks (str) and each block's items, in document order."""
    groups: list[Union[str, list[_Item]]] = []
    block: list[_Item] = []

    def flush() -> None:
        nonlocal block
        if block:
            groups.append(block)
            block = []

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind in ("start", "startend") and _untouched(token):
            inline = not _breaks(token.name)
            end = _subtree_end(tokens, i, inline)
            raw = "".join(t.raw for t in tokens[i:end])
            if inline:
                block.append(_Item("kept", raw))
            else:
                flush()
                groups.append(raw)
            i = end
            continue
        if token.kind == "data":
            block.append(_Item("text", token.raw, token.raw))
        elif token.kind == "entity":
            block.append(_Item("text", token.raw, html.unescape(token.raw)))
        elif token.kind == "other" or (token.kind == "startend" and token.name in INLINE):
            block.append(_Item("tag", token.raw, opens=True))  # a comment or empty element: between words
            block[-1].name = "" if token.kind == "other" else token.name
        elif token.name in INLINE_VOID:
            block.append(_Item("kept", token.raw))
        elif token.name in INLINE:
            block.append(_Item("tag", token.raw, name=token.name, opens=token.kind == "start"))
        else:
            flush()
            groups.append(token.raw)
        i += 1
    flush()
    return groups


def _block(items: list[_Item], language: str, fits, limit_name: str) -> _Block:
    plain: list[str] = []
    kept: list[Span] = []
    position = 0
    for item in items:
        item.start = position
        if item.kind == "text":
            plain.append(_flat(item.text))
        elif item.name in SPACES:
            plain.append(" ")  # what the model reads; the element itself is kept (in a gap, or placed)
        elif item.kind == "kept":
            plain.append(OBJECT)
            kept.append((position, position + 1))
        else:
            continue
        position += len(plain[-1])
    text = "".join(plain)
    elements = _elements(items, len(text))
    for tag in items:
        if tag.kind == "tag":
            tag.by_punctuation = _by_punctuation(text, tag.start, tag.opens)
    kept += [(e.start, e.end) for e in elements.values()  # elements with nothing to translate: kept whole
             if e.end > e.start and not translatable_parts(text, (e.start, e.end))]
    segmented = segment(text, language, fits, limit_name, kept=kept, lines=False)
    return _Block(items, text, elements, segmented, _spans(segmented))


def _by_punctuation(text: str, position: int, opens: bool) -> bool:
    """Whether the element's text starts (for its opening tag) or ends (closing) with a letter or digit: then
    the tag stays inside the punctuation around the translated word ('„<b>Hund', '<b>Hund</b> läuft.' giving
    '<b>dog</b>.', not '<b>dog.</b>')."""
    if opens:
        return position < len(text) and text[position].isalnum()
    return position > 0 and text[position - 1].isalnum()


def _flat(text: str) -> str:
    """Whitespace as spaces (a line break inside a block is a space in HTML), the length unchanged."""
    return "".join(" " if c.isspace() else c for c in text)


def _elements(items: list[_Item], length: int) -> dict[int, _Element]:
    """Pair each inline start tag with its end tag; one without an end runs to the end of the block, an end
    tag without a start is left in place."""
    elements: dict[int, _Element] = {}
    open_: list[tuple[str, int]] = []
    for number, item in enumerate(items):
        if item.kind != "tag" or not item.name or item.name in SPACES:
            continue
        if item.opens:
            item.element = number
            elements[number] = _Element(item.start, length)
            open_.append((item.name, number))
        elif any(name == item.name for name, _ in open_):
            while open_:
                name, element = open_.pop()
                elements[element].end = item.start
                if name == item.name:
                    item.element = element
                    break
    return elements


def _spans(segmented: Segmented) -> list[Span]:
    spans, position = [], len(segmented.gaps[0])
    for sentence, gap in zip(segmented.sentences, segmented.gaps[1:]):
        spans.append((position, position + len(sentence)))
        position += len(sentence) + len(gap)
    return spans
