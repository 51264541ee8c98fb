"""The HTML path against plain text on the same sentences: what parsing, placing inline tags through the
attention and reassembly cost, and what the markup costs in BLEU.

Multi30k test2016 is joined into paragraphs of k sentences. The plain side translates them as text; the HTML
side as `<p>` documents in which one word of every sentence is wrapped in `<b>` (so every sentence carries an
inline tag that must be placed) and every paragraph ends with a link, a mention and an emoji (protected
spans, kept out of the model). Both go through the same in-process path (`translate_documents`), the sides
alternating within each repeat; sentences/s is the median over the repeats. BLEU is scored on the HTML
side's text with its markup removed, against the plain side's, both on the same paragraphs. Last, the
Mastodon-shaped request of the conformance test (two HTML posts of two paragraphs, source auto) is sent to a
live service, and its latency reported (the median of the repeats; Mastodon gives up after 10 s).

    .venv/bin/python -m bench.html --checkpoint runs/quickstart/checkpoints/best.pt [--repeats 3] [--k 4]
"""
from __future__ import annotations

import argparse
import html
import json
import statistics
import time
from html.parser import HTMLParser
from pathlib import Path

from sacrebleu.metrics import BLEU

from seq2seq.corpus import read_lines
from seq2seq.documents import Format, translate_documents
from seq2seq.translate import Translator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
TAIL = ' <a href="https://example.org/bild?id=1">https://example.org/bild?id=1</a> @alice 🎉'
TAIL_TEXT = " https://example.org/bild?id=1 @alice 🎉"  # the tail without its markup


def _bold_one_word(sentence: str, index: int) -> str:
    words = sentence.split()
    pick = index % len(words)
    words = [html.escape(w, quote=False) for w in words]
    words[pick] = f"<b>{words[pick]}</b>"
    return " ".join(words)


def documents(sentences: list[str], k: int) -> tuple[list[str], list[str]]:
    """The same paragraphs as plain text and as HTML."""
    plain, marked = [], []
    for start in range(0, len(sentences), k):
        group = sentences[start:start + k]
        plain.append(" ".join(group))
        marked.append("<p>" + " ".join(_bold_one_word(s, start + i) for i, s in enumerate(group)) + TAIL + "</p>")
    return plain, marked


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(document: str) -> str:
    reader = _Text()
    reader.feed(document)
    return "".join(reader.parts).replace(TAIL_TEXT, "").strip()



def run(checkpoint: str, k: int, repeats: int, beam_sizes: list[int]) -> list[dict]:
    translator = Translator(checkpoint, device="cpu")
    sentences = read_lines(DATA / "test_2016_flickr.de.gz")
    plain, marked = documents(sentences, k)
    rows = []
    for beam in beam_sizes:
        options = translator.options(beam_size=beam)
        times: dict[str, list[float]] = {"text": [], "html": []}
        outputs: dict[str, list[str]] = {}
        for _ in range(repeats):
            sides: tuple[tuple[Format, list[str]], ...] = (("text", plain), ("html", marked))
            for side, texts in sides:
                started = time.perf_counter()
                outputs[side] = [d.text for d in translate_documents(translator, texts, options, format=side)]
                times[side].append(time.perf_counter() - started)
        stripped = [text_of(d) for d in outputs["html"]]
        rows.append({"beam": beam, "k": k, "sentences": len(sentences),
                     "text_sentences_per_s": round(len(sentences) / statistics.median(times["text"]), 1),
                     "html_sentences_per_s": round(len(sentences) / statistics.median(times["html"]), 1),
                     "bleu_html_text_vs_plain": round(BLEU().corpus_score(stripped, [outputs["text"]]).score, 2),
                     "tails_intact": sum(d.endswith(TAIL + "</p>") for d in outputs["html"]),
                     "documents": len(marked), "bold_kept": sum(d.count("<b>") for d in outputs["html"]),
                     "times": times})
    return rows


def mastodon_latency(checkpoint: str, repeats: int) -> dict:
    """Seconds for the conformance test's Mastodon request against a live service of `checkpoint`."""
    import httpx

    from service.app import create_app, load_registry
    from service.settings import ServiceSettings
    from tests.conftest import serve_in_thread
    from tests.test_integrations import POSTS

    settings = ServiceSettings(checkpoints=[checkpoint])
    body = {"q": POSTS, "source": "auto", "target": "en", "format": "html", "api_key": None}
    seconds = []
    with serve_in_thread(create_app(settings, load_registry(settings))) as url, httpx.Client(base_url=url) as http:
        http.post("/translate", json=body, timeout=60).raise_for_status()  # the first request warms up
        for _ in range(repeats):
            started = time.perf_counter()
            http.post("/translate", json=body, timeout=60).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3), "repeats": repeats}


def report(rows: list[dict]) -> str:
    lines = ["| beam | text sentences/s | HTML sentences/s | HTML / text | BLEU of HTML's text against plain's | "
             "protected tails intact | `<b>` kept |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['beam']} | {r['text_sentences_per_s']} | {r['html_sentences_per_s']} | "
                     f"{r['html_sentences_per_s'] / r['text_sentences_per_s']:.2f} | {r['bleu_html_text_vs_plain']} | "
                     f"{r['tails_intact']}/{r['documents']} | {r['bold_kept']}/{r['sentences']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--k", type=int, default=4, help="sentences per paragraph")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beam-size", type=int, action="append", help="default: 1 and 5")
    args = parser.parse_args()
    rows = run(args.checkpoint, args.k, args.repeats, args.beam_size or [1, 5])
    mastodon = mastodon_latency(args.checkpoint, max(5, args.repeats))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"html-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(
        {"rows": rows, "mastodon": mastodon}, indent=1))
    print(report(rows))
    print(f"Mastodon-shaped request (2 posts, HTML, source auto): median {mastodon['median_s']} s, "
          f"max {mastodon['max_s']} s over {mastodon['repeats']}")


if __name__ == "__main__":
    main()
