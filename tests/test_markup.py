"""HTML, protected spans and document files: what comes back is the same document with its text translated.

The structure is checked with translations that make every change visible (each sentence upper-cased, or
given back as it is), then with the tiny model, whose attention places the inline tags."""
from __future__ import annotations

import io
import zipfile
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.formats import html_as_runs, read_document, runs_as_html
from seq2seq.markup import segment_html
from seq2seq.protect import protected_spans
from seq2seq.segment import segment
from seq2seq.translate import Translation


def translated(document, change=str.upper) -> str:
    """The document rendered with each sentence changed by `change` (no attention: tags placed by position)."""
    return document.render([Translation(text=change(s), score=0.0, source_pieces=[], target_pieces=[])
                            for s in document.sentences])


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag):
        self.tags.append(("end", tag))


def tags_of(document: str) -> list:
    parser = _Tags()
    parser.feed(document)
    parser.close()
    return parser.tags


MASTODON_POST = ('<p><span class="h-card" translate="no"><a href="https://social.example/@alice" class="u-url mention">'
                 '@<span>alice</span></a></span> Ein Hund läuft über die <b>grüne</b> Wiese. Zwei Männer spielen '
                 'Fußball <span translate="no">:blobcat:</span> im Park.</p>\n'
                 '<p>Siehe <a href="https://example.org/a?b=1&amp;c=2" '
                 'target="_blank" rel="nofollow noopener noreferrer"><span class="invisible">https://</span>'
                 '<span class="">example.org/a?b=1&amp;c=2</span></a> und '
                 '<a href="https://social.example/tags/nmt" class="mention hashtag" '
                 'rel="tag">#<span>nmt</span></a> 🎉</p>')


def test_protected_spans_come_back_exactly_in_plain_text():
    text = ("Schau https://example.org/a?b=1 an, @bob@social.example! Mail an anna@example.org, #NMT 🎉👍🏽 "
            "Es kostet 3,50 Euro. Klicke [X7X] und [X12X]. :blobcat: 🇩🇪")
    spans = [text[a:b] for a, b in protected_spans(text)]
    assert spans == ["https://example.org/a?b=1", "@bob@social.example", "anna@example.org", "#NMT", "🎉", "👍🏽",
                     "3,50", "[X7X]", "[X12X]", ":blobcat:", "🇩🇪"]
    segmented = segment(text, "de")
    assert not any(span in sentence for sentence in segmented.sentences for span in spans)
    out = segmented.join([s.upper() for s in segmented.sentences])
    for span in spans:
        assert span in out
    assert "SCHAU" in out and "EURO." in out


def test_html_keeps_every_tag_attribute_and_entity_and_translates_the_text():
    document = segment_html(MASTODON_POST, "de")
    out = translated(document)
    assert tags_of(out) == tags_of(MASTODON_POST)
    assert "EIN HUND LÄUFT ÜBER DIE <b>GRÜNE</b> WIESE." in out
    for kept in ('<span translate="no">:blobcat:</span>', "@<span>alice</span>", "#<span>nmt</span>", "🎉",
                 "example.org/a?b=1&amp;c=2</span>", "</p>\n<p>"):
        assert kept in out
    assert translated(document, change=lambda s: s) == MASTODON_POST  # nothing else changes


def test_code_pre_script_style_and_translate_no_stay_untouched():
    source = ('<pre>Der Hund</pre><p>Rufe <code>Hund()</code> auf.</p><script>var s = "<p>Hund</p>";</script>'
              '<style>p { color: red }</style><div translate="no">Kein Hund</div><p class="notranslate">Nein</p>'
              '<p>Ja</p>')
    out = translated(segment_html(source, "de"))
    assert out == ('<pre>Der Hund</pre><p>RUFE <code>Hund()</code> AUF.</p><script>var s = "<p>Hund</p>";</script>'
                   '<style>p { color: red }</style><div translate="no">Kein Hund</div><p class="notranslate">Nein</p>'
                   '<p>JA</p>')


@pytest.mark.parametrize("broken", ["<p>Ein <b>Hund", "<div>Ein <i>Hund</div> läuft </b> <p", "</p></p>Text<<<>>",
                                    "<p a='1 b=2>Hund</p>", "<!-- offen <p>Hund", "&amp &nosuch; <p>Hund &#xZZ;",
                                    "<![CDATA[ x ]]><p>Hund</p>", "\ud800<p>Hund</p>"])
def test_broken_html_gets_a_best_effort_answer(broken):
    document = segment_html(broken, "de")
    out = translated(document)
    assert [t for t in tags_of(out) if t[0] == "start"] == [t for t in tags_of(broken) if t[0] == "start"]


_WORDS = st.sampled_from(["Hund", "läuft", "über", "die", "Wiese.", "Zwei", "Männer!", "&amp;", "3", "https://x.org",
                          "#nmt", "🎉", "@bob"])
_INLINE = st.sampled_from(['<b>', '<i class="x">', '<a href="https://x.org/?a=1&amp;b=2">', '<span translate="no">',
                           "<code>", "<em>"])
_BLOCK = st.sampled_from(["<p>", "</p>", "<br/>", "<li>", "<div>", "</div>", "<!-- c -->"])


@st.composite
def documents(draw, glue=("", " ", "\n"), empty=0, blocks=_BLOCK):
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(blocks))
        elif kind == 1:
            opened = draw(_INLINE)
            name = opened[1:].split()[0].rstrip(">")
            parts.append(f"{opened}{' '.join(draw(st.lists(_WORDS, min_size=empty, max_size=3)))}</{name}>")
        else:
            parts.append(" ".join(draw(st.lists(_WORDS, min_size=1, max_size=6))))
        parts.append(draw(st.sampled_from(glue)))
    return "".join(parts)


@settings(max_examples=150, deadline=None)
@given(documents())
def test_any_document_keeps_its_markup(source):
    assert tags_of(translated(segment_html(source, "de"))) == tags_of(source)


@settings(max_examples=150, deadline=None)
@given(documents(glue=(" ",), empty=1, blocks=st.sampled_from(["<p>", "</p>", "<br/>", "<li>", "<div>", "</div>"])))
def test_a_document_comes_back_unchanged_when_nothing_is_translated(source):
    """Byte for byte where tags sit between words (a tag inside a word wraps the whole translated word; an empty
    element or a comment inside a sentence may move across a space)."""
    assert translated(segment_html(source, "de"), change=lambda s: s) == source


def test_inline_tags_follow_their_words_through_the_attention(checkpoint):
    """With the real model: each tag wraps words of the translation, in the translation's own order."""
    from seq2seq.documents import translate_documents
    from seq2seq.translate import Translator

    translator = Translator(checkpoint, device="cpu")
    source = "<p>Ein <b>großer</b> Hund läuft über die <a href='https://x.org'>grüne Wiese</a>.</p>"
    [out] = translate_documents(translator, [source], format="html")
    assert tags_of(out.text) == tags_of(source)
    sentence = out.sentences[0]
    assert sentence.attention is not None  # placed through the attention
    bold = out.text.split("<b>")[1].split("</b>")[0]
    link = out.text.split("'>")[1].split("</a>")[0]
    assert bold.strip() and link.strip() and bold in sentence.text and link in sentence.text
    plain = out.text.replace("<p>", "").replace("</p>", "").replace("<b>", "").replace("</b>", "")
    assert plain.replace("<a href='https://x.org'>", "").replace("</a>", "") == sentence.text


def _docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Ein Hund", level=1)
    paragraph = document.add_paragraph("Der ", style="List Bullet")
    paragraph.add_run("große").bold = True
    paragraph.add_run(" Hund läuft über die Wiese. Siehe https://example.org.")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Zwei Männer"
    table.cell(0, 1).text = "3"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _translate_file(data: bytes, name: str) -> bytes:
    file = read_document(data, name)
    documents = [segment_html(t, "de") if file.format == "html" else segment(t, "de") for t in file.texts]
    return file.write([translated(d) for d in documents])


def test_a_docx_keeps_its_paragraphs_styles_and_runs():
    import docx

    out = docx.Document(io.BytesIO(_translate_file(_docx_bytes(), "brief.docx")))
    assert [p.style.name for p in out.paragraphs] == ["Heading 1", "List Bullet"]
    assert out.paragraphs[0].text == "EIN HUND"
    runs = out.paragraphs[1].runs
    assert [r.bold for r in runs] == [None, True, None]
    assert runs[1].text.strip() == "GROSSE" and "https://example.org" in runs[2].text
    assert [c.text for c in out.tables[0].rows[0].cells] == ["ZWEI MÄNNER", "3"]


def test_a_pptx_and_an_epub_come_back_translated_with_their_structure():
    import pptx

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Ein Hund"
    slide.placeholders[1].text_frame.text = "Zwei Männer spielen."
    buffer = io.BytesIO()
    deck.save(buffer)
    out = pptx.Presentation(io.BytesIO(_translate_file(buffer.getvalue(), "folien.pptx")))
    assert [s.text_frame.text for s in out.slides[0].shapes if s.has_text_frame] == ["EIN HUND", "ZWEI MÄNNER SPIELEN."]

    book = io.BytesIO()
    with zipfile.ZipFile(book, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("OEBPS/kapitel.xhtml", '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
                   '<p>Ein <em>Hund</em>.</p></body></html>', compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/bild.png", b"\x89PNG", compress_type=zipfile.ZIP_DEFLATED)
    out_book = zipfile.ZipFile(io.BytesIO(_translate_file(book.getvalue(), "buch.epub")))
    assert out_book.namelist() == ["mimetype", "OEBPS/kapitel.xhtml", "OEBPS/bild.png"]
    assert out_book.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
    assert "<p>EIN <em>HUND</em>.</p>" in out_book.read("OEBPS/kapitel.xhtml").decode()


def test_runs_go_through_html_and_back():
    runs = ["Der ", "<große> & ", "Hund"]
    assert html_as_runs(runs_as_html(runs), 3) == runs


@pytest.mark.parametrize("name,data", [("a.docx", b"not a zip"), ("a.epub", b"PK\x03\x04broken"),
                                       ("a.txt", b"\xff\xfe\xfa"), ("a.exe", b"MZ"), ("noextension", b"text")])
def test_a_file_that_is_not_what_it_says_is_refused_with_a_reason(name, data):
    from seq2seq.errors import UserError

    with pytest.raises(UserError):
        read_document(data, name)


def test_the_cli_translates_a_whole_file_in_its_format(checkpoint, tmp_path):
    from tests.conftest import run_cli

    source = tmp_path / "brief.docx"
    source.write_bytes(_docx_bytes())
    result = run_cli("translate", "--checkpoint", checkpoint, "--document", str(source), "--output",
                     str(tmp_path / "letter.docx"))
    assert result.returncode == 0, result.stderr
    import docx

    out = docx.Document(str(tmp_path / "letter.docx"))
    assert [p.style.name for p in out.paragraphs] == ["Heading 1", "List Bullet"]
    assert "https://example.org" in out.paragraphs[1].text and "Hund" not in out.paragraphs[1].text
    wrong = run_cli("translate", "--checkpoint", checkpoint, "--document", str(source), "--output", "x.txt")
    assert wrong.returncode == 2 and "same extension" in wrong.stderr and not (tmp_path / "x.txt").exists()


def test_an_odt_keeps_its_paragraphs_and_spans():
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:'
               'opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
               'office:version="1.3"><office:body><office:text><text:h text:outline-level="1">Ein Hund</text:h>'
               '<text:p text:style-name="P1">Der <text:span text:style-name="T1">große</text:span> Hund&apos;s '
               'Wiese.<text:s text:c="2"/>Zwei Männer.</text:p></office:text></office:body></office:document-content>')
    book = io.BytesIO()
    with zipfile.ZipFile(book, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", "<manifest/>", compress_type=zipfile.ZIP_DEFLATED)
    out = zipfile.ZipFile(io.BytesIO(_translate_file(book.getvalue(), "brief.odt")))
    assert out.namelist() == ["mimetype", "content.xml", "META-INF/manifest.xml"]
    translated = out.read("content.xml").decode()
    assert tags_of(translated) == tags_of(content)
    assert '<text:h text:outline-level="1">EIN HUND</text:h>' in translated
    assert '<text:span text:style-name="T1">GROSSE</text:span>' in translated and "ZWEI MÄNNER." in translated
    from xml.dom.minidom import parseString

    parseString(translated)  # still well-formed XML
