"""Document files: the texts of a .txt, .html, .docx, .pptx, .epub, .odt or .odp file, and the file written back
in its own format with their translations (same paragraphs, styles, formatting and everything that is not text).

Reading and writing are two steps around the translation (`read_document` → `DocumentFile.texts` →
translate → `DocumentFile.write`), so the CLI and the service translate a file as they translate texts.

Word and PowerPoint files are read by python-docx and python-pptx; an EPUB is a zip of XHTML pages, and an
OpenDocument file a zip whose text is XML of paragraphs and spans (`text:p`, `text:span`, which markup.py
knows): each is translated as HTML, every other file in the zip copied as it is. A paragraph of formatted
runs (bold, a font, a colour) goes through the HTML path as a span per run, so that each run keeps its
formatting on the words that were its own (markup.py, align.py).
"""
from __future__ import annotations

import html
import io
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any, Callable, Sequence

from seq2seq.documents import Format
from seq2seq.errors import UserError

SUPPORTED = (".txt", ".html", ".htm", ".docx", ".pptx", ".epub", ".odt", ".odp")
_PAGE = (".xhtml", ".html", ".htm")
_ODF_TEXT = ("content.xml", "styles.xml")  # the body, and the headers and footers


@dataclass
class DocumentFile:
    """What a file gives to translate (`texts`, all in `format`) and how to write it back (`write`)."""

    texts: list[str]
    format: Format
    writer: Callable[[Sequence[str]], bytes]

    def write(self, translations: Sequence[str]) -> bytes:
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(translations)} translations for {len(self.texts)} texts")
        return self.writer(translations)


def suffix_of(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise UserError(f"file format not supported: {suffix or 'no extension'} (supported: {', '.join(SUPPORTED)})")
    return suffix


def read_document(data: bytes, name: str) -> DocumentFile:
    """The file `name` (its extension says the format) read from `data`; UserError when it is not that format."""
    suffix = suffix_of(name)
    try:
        if suffix == ".txt":
            return DocumentFile([_decode(data)], "text", lambda t: t[0].encode("utf-8"))
        if suffix in (".html", ".htm"):
            return DocumentFile([_decode(data)], "html", lambda t: t[0].encode("utf-8"))
        if suffix == ".epub":
            return _read_zip(data, lambda name: name.lower().endswith(_PAGE))
        if suffix in (".odt", ".odp"):
            return _read_zip(data, lambda name: name in _ODF_TEXT)
        return _read_office(data, suffix)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a damaged file makes its library raise
        raise UserError(f"not a valid {suffix} file: {type(err).__name__}: {err}"[:300]) from None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"the file is not UTF-8 text (byte {err.start})") from None


def _read_zip(data: bytes, is_page: Callable[[str], bool]) -> DocumentFile:
    """A zip whose pages (XHTML or XML) are translated as HTML, every other entry copied as it is."""
    source = zipfile.ZipFile(io.BytesIO(data))
    entries = source.infolist()
    pages = [e for e in entries if is_page(e.filename)]
    texts = [_decode(source.read(e)) for e in pages]

    def write(translations: Sequence[str]) -> bytes:
        translated = {e.filename: t.encode("utf-8") for e, t in zip(pages, translations)}
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:  # same order and compression: 'mimetype' first, stored
            for entry in entries:
                target.writestr(entry, translated.get(entry.filename, source.read(entry)),
                                compress_type=entry.compress_type)
        return out.getvalue()

    return DocumentFile(texts, "html", write)


def _read_office(data: bytes, suffix: str) -> DocumentFile:
    document = _open_office(data, suffix)
    paragraphs = [p for p in _paragraphs(document, suffix) if any(run.text for run in p.runs)]
    texts = [runs_as_html([run.text for run in p.runs]) for p in paragraphs]

    def write(translations: Sequence[str]) -> bytes:
        for paragraph, translation in zip(paragraphs, translations):
            for run, text in zip(paragraph.runs, html_as_runs(translation, len(paragraph.runs))):
                if run.text or text:  # a run without text (a picture, a field) is left as it is
                    run.text = text
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()

    return DocumentFile(texts, "html", write)


def _open_office(data: bytes, suffix: str) -> Any:
    if suffix == ".docx":
        import docx

        return docx.Document(io.BytesIO(data))
    import pptx

    return pptx.Presentation(io.BytesIO(data))


def _paragraphs(document: Any, suffix: str) -> list[Any]:
    """Every paragraph with runs: the body, tables (nested too), headers and footers; on slides, every text
    frame and table cell, in groups too."""
    if suffix == ".docx":
        found = list(_docx_paragraphs(document))
        for section in document.sections:
            for part in (section.header, section.footer):
                if not part.is_linked_to_previous:
                    found += _docx_paragraphs(part)
        return found
    return [p for slide in document.slides for shape in slide.shapes for p in _shape_paragraphs(shape)]


def _docx_paragraphs(container: Any) -> list[Any]:
    found = list(container.paragraphs)
    for table in container.tables:
        for row in table.rows:
            for cell in _unique(row.cells):
                found += _docx_paragraphs(cell)
    return found


def _unique(cells: list[Any]) -> list[Any]:
    """A merged cell appears once per grid column it spans: translate it once."""
    seen, unique = set(), []
    for cell in cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            unique.append(cell)
    return unique


def _shape_paragraphs(shape: Any) -> list[Any]:
    if getattr(shape, "shapes", None) is not None:  # a group
        return [p for inner in shape.shapes for p in _shape_paragraphs(inner)]
    if getattr(shape, "has_table", False):
        return [p for row in shape.table.rows for cell in row.cells for p in cell.text_frame.paragraphs]
    if getattr(shape, "has_text_frame", False):
        return list(shape.text_frame.paragraphs)
    return []


def runs_as_html(runs: Sequence[str]) -> str:
    """A paragraph's runs as one HTML paragraph, a span per run, so that inline placement keeps them apart."""
    return "".join(f'<span data-run="{i}">{html.escape(text, quote=False)}</span>' for i, text in enumerate(runs))


def html_as_runs(document: str, count: int) -> list[str]:
    """The text of each run from a translated `runs_as_html` (text outside every span joins the run before)."""
    reader = _RunReader(count)
    reader.feed(document)
    reader.close()
    return reader.runs


class _RunReader(HTMLParser):
    def __init__(self, count: int):
        super().__init__(convert_charrefs=True)
        self.runs = [""] * count
        self.current = 0

    def handle_starttag(self, tag, attrs):
        run = dict(attrs).get("data-run")
        if tag == "span" and run is not None and run.isdigit() and int(run) < len(self.runs):
            self.current = int(run)

    def handle_data(self, data):
        self.runs[self.current] += data
