"""Hostile and broken input, fuzzed: arbitrary Unicode through the tokenizer and the Translator, schemathesis
over every route of the service's own /openapi.json, and broken HTTP (malformed or deeply nested JSON,
wrong content types, huge bodies, unpaired surrogates, slow clients). Every one gets a translation or a
4xx, never a 5xx, a crash or a hang."""
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from seq2seq.documents import segment_texts, translate_documents
from seq2seq.tokenizer import clean_text
from seq2seq.translate import Translator
from service.app import create_app
from service.settings import ServiceSettings
from tests.conftest import serve_in_thread

NASTY = ["", " ", "\t\n\r\x0b\x0c ", "\x00", "\x00" * 50, "\x1b[31mrot\x1b[0m", "\u202eabc\u202c", "\u200b" * 40,
         "\ufeffEin Hund", "שלום עולם", "مرحبا بالعالم", "😀" * 60, "👨‍👩‍👧‍👦🏳️‍🌈", "\ud800", "a\udfffb\udbff",
         "Ein Hund läuft über die Wiese.", "e\u0301" * 30, "\U0010ffff\U000e0001", "\r\n" * 20, "ǅ ß ﬃ Σ ΐ"]
# Any code point, lone surrogates included (a JSON "\ud800" escape decodes to one); mixed with the list above.
ANY_TEXT = st.one_of(st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=200),
                     st.sampled_from(NASTY), st.lists(st.sampled_from(NASTY), max_size=6).map("".join))


@pytest.fixture(scope="module")
def translator(checkpoint) -> Translator:
    return Translator(checkpoint, device="cpu")


def _check_bounded(translator: Translator, texts: list[str], beam_size: int) -> None:
    """Texts translated whole (split into sentences no longer than the model's limit), each output bounded."""
    options = translator.options(beam_size=beam_size)
    started = time.perf_counter()
    results = translate_documents(translator, texts, options)
    assert time.perf_counter() - started < 120, "translation took far too long"
    assert len(results) == len(texts)
    tokenizer = translator.loaded.src_tokenizer
    for text, result in zip(texts, results):
        assert isinstance(result.text, str)
        if not text.strip():
            assert result.text == text  # whitespace comes back as it was
            continue
        [document] = segment_texts([text], translator.src_lang, tokenizer, translator.max_source_pieces)
        assert document.sentences == result.source_sentences
        assert document.join(document.sentences) == clean_text(text)  # nothing dropped (surrogates read as U+FFFD)
        for sentence, translation in zip(result.source_sentences, result.sentences):
            source = len(tokenizer.encode(sentence))
            assert source <= translator.max_source_pieces
            assert len(translation.target_pieces) <= options.max_length_ratio * source + options.max_length_extra


@given(text=ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_tokenizer_takes_any_unicode(toy_tokenizer, text):
    ids = toy_tokenizer.encode(text)
    assert all(0 <= i < toy_tokenizer.vocab_size for i in ids)
    assert toy_tokenizer.encode_batch([text, text]) == [ids, ids]
    assert len(toy_tokenizer.ids_to_pieces(ids)) == len(ids)
    assert isinstance(toy_tokenizer.decode(ids), str)


@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=4), beam_size=st.sampled_from([1, 3]))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_translator_takes_any_unicode(translator, texts, beam_size):
    _check_bounded(translator, texts, beam_size)


def test_translator_takes_100000_character_lines(translator):
    lines = ["a" * 100_000, "Ein Hund läuft über die Wiese. " * 3_300, "😀" * 100_000, "\u0301" * 100_000,
             " ".join(["\ud800x"] * 34_000), "\x00" * 100_000]
    assert all(len(line) >= 99_000 for line in lines)
    _check_bounded(translator, lines, beam_size=2)


# --- the service ----------------------------------------------------------------------------------
LIMITS = dict(max_texts=4, max_sentences=8, max_chars=300, max_beam_size=4, max_body_bytes=100_000, body_timeout_s=1.5)


@pytest.fixture(scope="module")
def server(registry):
    """A real server with small limits (shown in its /openapi.json), so fuzzed requests stay quick."""
    with serve_in_thread(create_app(ServiceSettings(**LIMITS), registry)) as url:
        yield url


# The schema of an app with these settings; it does not depend on the models, so none need loading here.
schema = schemathesis.openapi.from_dict(create_app(ServiceSettings(**LIMITS)).openapi())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_against_its_own_openapi_schema(case, server):
    """No 5xx, and every answer matches the schema's declared shape and content type."""
    case.call_and_validate(base_url=server, timeout=60,
                           checks=[not_a_server_error, response_schema_conformance, content_type_conformance])


JSON = "application/json"
DEEP = b"[" * 200_000 + b"]" * 200_000  # within no limit of ours but json's recursion
BROKEN = [  # (content type, body)
    (JSON, b'{"text": '), (JSON, b'{"text": "x"} trailing'), (JSON, b"{'text': 'x'}"), (JSON, b""),
    (JSON, b"null"), (JSON, b"[1, 2]"), (JSON, b'"text"'), (JSON, b'{"text": NaN}'),
    (JSON, b'\xef\xbb\xbf{"text": "x"}'),
    (JSON, b'{"text": "\xff\xfe"}'), (JSON, b'{"text": "x", "beam_size": 1' + b"0" * 5000 + b"}"),
    (JSON, b'{"text": {"a": [1, {"b": null}]}}'), (JSON, b'{"q": ["x", 1, null]}'), (JSON, b'{"q": []}'),
    (JSON, b'{"q": "x", "alternatives": Infinity}'), (JSON, b'{"q": "x", "alternatives": 1.5}'),
    (JSON, b'{"q": "x", "api_key": ["k"]}'), (JSON, DEEP[:100_000 - 2] + b"]]"),
    (JSON, b'{"text": ' + DEEP[:60_000] + b"}"),
    ("text/plain", b'{"text": "x"}'), ("application/xml", b"<text>x</text>"), (None, b'{"text": "x"}'),
    ("multipart/form-data", b"garbage"), ("multipart/form-data; boundary=zz", b"--zz\r\ngarbage"),
    ("application/x-www-form-urlencoded", b"%%%&&&==&q"), ("application/json; charset=latin-1", b'{"text": "\xe9"}'),
]


@pytest.mark.parametrize("path", ["/v1/translate", "/translate", "/detect"])
def test_broken_bodies_get_4xx(server, path):
    with httpx.Client(base_url=server, timeout=60) as http:
        for content_type, body in BROKEN:
            headers = {"content-type": content_type} if content_type else {}
            response = http.post(path, content=body, headers=headers)
            assert response.status_code < 500, (content_type, body[:60], response.text[:300])
            if response.status_code >= 400:
                error = response.json()
                assert error.get("detail") or error.get("error"), response.text
        assert http.get("/health").status_code == 200


def test_unpaired_surrogates_escaped_in_json(server):
    """JSON may escape a lone surrogate ("\\ud800"); the native API refuses it (422), the LibreTranslate
    API translates it like U+FFFD (its clients send whatever their users paste)."""
    text = b'"Ein Hund \\ud800 l\\udfffuft"'  # the JSON escapes, as a client would send them
    with httpx.Client(base_url=server, timeout=60) as http:
        native = http.post("/v1/translate", content=b'{"text": ' + text + b"}", headers={"content-type": JSON})
        assert native.status_code == 422, native.text
        libre = http.post("/translate", content=b'{"q": ' + text + b', "source": "de", "target": "en"}',
                          headers={"content-type": JSON})
        assert libre.status_code == 200 and isinstance(libre.json()["translatedText"], str), libre.text
        detect = http.post("/detect", content=b'{"q": "\\udc00\\ud800"}', headers={"content-type": JSON})
        assert detect.status_code == 200, detect.text


def _raw(server: str, request: bytes, timeout: float = 30) -> bytes:
    """Send exact bytes and read the answer until the server closes the connection."""
    address = urlparse(server)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_huge_bodies_get_413_before_they_are_read(server):
    started = time.perf_counter()
    declared = _raw(server, b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 1000000000\r\nConnection: close\r\n\r\n")  # and never sends it
    assert _status(declared) == 413 and time.perf_counter() - started < 5
    with httpx.Client(base_url=server, timeout=60) as http:
        big = b'{"text": "' + b"a" * 2_000_000 + b'"}'
        for path in ("/v1/translate", "/translate"):
            assert http.post(path, content=big, headers={"content-type": JSON}).status_code == 413
            chunked = http.post(path, content=iter([big[:1000], big[1000:]]), headers={"content-type": JSON})
            assert chunked.status_code == 413
        too_many = http.post("/v1/translate", json={"text": ["Ein Hund."] * 5})
        assert too_many.status_code == 422  # over max_texts, within the byte limit
        assert http.get("/health").status_code == 200


def test_slow_client_gets_408_and_others_are_served_meanwhile(server):
    """Headers, then a body trickled a byte every 0.2 s: answered 408 at body_timeout_s, while a normal
    request sent in the meantime is answered at once."""
    answers = {}

    def trickle():
        address = urlparse(server)
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200\r\n\r\n")
            started = time.perf_counter()
            try:
                for _ in range(200):
                    sock.sendall(b" ")
                    time.sleep(0.2)
            except OSError:  # the server answered and closed the connection
                pass
            sock.settimeout(10)
            answers["slow"] = (sock.recv(65536), time.perf_counter() - started)

    slow = threading.Thread(target=trickle)
    slow.start()
    time.sleep(0.5)
    started = time.perf_counter()
    normal = httpx.post(f"{server}/v1/translate", json={"text": "Ein Hund.", "beam_size": 1}, timeout=30)
    assert normal.status_code == 200 and time.perf_counter() - started < 5
    slow.join(timeout=60)
    answer, seconds = answers["slow"]
    assert _status(answer) == 408 and b"not received within" in answer, answer[:300]
    assert seconds < LIMITS["body_timeout_s"] + 5
