"""Conformance with the LibreTranslate clients people run, against a live server (uvicorn on loopback).

Each request is shaped exactly as the client's source sends it (cited per test), and each test reads back
the fields that client reads. Then the PyPI clients (libretranslatepy, deep-translator), the npm client
`libretranslate` under node, and the contract details clients trip on: error shapes, keys, CORS, codes.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess

import httpx
import pytest

from tests.conftest import REPO, serve_in_thread
from tests.test_markup import tags_of

MENTION = ('<span class="h-card" translate="no"><a href="https://social.example/@alice" class="u-url mention">'
           '@<span>alice</span></a></span>')
HASHTAG = '<a href="https://social.example/tags/hunde" class="mention hashtag" rel="tag">#<span>hunde</span></a>'
LINK = ('<a href="https://example.org/wiese?tag=1&amp;x=2" target="_blank" rel="nofollow noopener noreferrer">'
        '<span class="invisible">https://</span><span class="">example.org/wiese?tag=1&amp;x=2</span>'
        '<span class="invisible"></span></a>')
EMOJI = '<span translate="no">:blobcat:</span>'
POSTS = [
    f"<p>{MENTION} Ein Hund läuft über die Wiese. Zwei Männer spielen Fußball {EMOJI} im Park.</p>"
    f"<p>Eine Frau sitzt auf einer Bank. {LINK} {HASHTAG}</p>",
    f"<p>Ein kleines Mädchen spielt im Sand.</p><p>Ein Mann in einem <b>roten</b> Hemd fährt Fahrrad. {EMOJI}</p>",
]


def _texts_outside_markup(html: str) -> str:
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    reader = Text()
    reader.feed(html)
    return " ".join(reader.parts)


def test_mastodon_html_posts_come_back_with_their_markup_within_its_timeout(live_server):
    """mastodon/mastodon app/lib/translation_service/libre_translate.rb: GET /languages (code, targets), then
    POST /translate JSON {q: [html...], source: 'auto', target, format: 'html', api_key: null}; it reads
    translatedText as a list and detectedLanguage[i].language; app/lib/request.rb reads within 10 s."""
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=live_server, timeout=10.0, headers=headers) as mastodon:
        languages = mastodon.get("/languages").json()
        assert "en" in next(lang["targets"] for lang in languages if lang["code"] == "de")
        response = mastodon.post("/translate", content=json.dumps(
            {"q": POSTS, "source": "auto", "target": "en", "format": "html", "api_key": None}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["translatedText"], list) and len(body["translatedText"]) == len(POSTS)
    assert [d["language"] for d in body["detectedLanguage"]] == ["de", "de"]
    for post, translation in zip(POSTS, body["translatedText"]):
        assert tags_of(translation) == tags_of(post)  # the same tags with the same attributes, in order
        assert translation.count("<p>") == 2  # two paragraphs each
        text = _texts_outside_markup(translation)
        assert not {"Ein", "Mann", "läuft", "spielt", "Frau"} & set(text.split())  # translated
    first = body["translatedText"][0]
    for kept in (MENTION, HASHTAG, LINK, EMOJI):
        assert kept in first


def test_discourse_detects_then_translates_cooked_html(live_server):
    """discourse/discourse-translator app/services/discourse_translator/provider/libre_translate.rb: form
    bodies throughout, `api_key` always present (bare when unset); POST /detect with the text (markup
    stripped) reads res[0]['language']; POST /translate with the cooked HTML and format=html reads
    translatedText as a string."""
    cooked = ('<p>Hallo <a class="mention" href="/u/alice">@alice</a>, ein Hund läuft über die Wiese. '
              '<img src="/images/emoji/twitter/dog.png?v=12" title=":dog:" class="emoji" alt=":dog:" loading="lazy" '
              'width="20" height="20"></p>\n<pre><code class="lang-python">print("Hund")\n</code></pre>')
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=live_server, timeout=30.0) as discourse:
        detected = discourse.post("/detect", content=b"q=Hallo+%40alice%2C+ein+Hund+l%C3%A4uft+%C3%BCber+die+Wiese."
                                  b"&api_key", headers=form)
        assert detected.status_code == 200, detected.text
        source = detected.json()[0]["language"]
        assert source == "de"
        response = discourse.post("/translate", data={"q": cooked, "source": source, "target": "en", "format": "html",
                                                      "api_key": ""})
    assert response.status_code == 200, response.text
    translated = response.json()["translatedText"]
    assert isinstance(translated, str) and tags_of(translated) == tags_of(cooked)
    assert '<pre><code class="lang-python">print("Hund")\n</code></pre>' in translated
    assert '<a class="mention" href="/u/alice">@alice</a>' in translated and "läuft" not in translated


def test_nextcloud_library_flow(live_server):
    """jefs42/libretranslate src/LibreTranslate.php (used by v1r0x/integration_libretranslate
    lib/LibretranslateProvider.php): GET /frontend/settings and /languages; POST /detect with the text in the
    query string and an empty body; POST /translate and /translate_file as multipart with format=html and an
    empty api_key, then GET translatedFileUrl; POST /suggest (form) reads `success` or `error`."""
    with httpx.Client(base_url=live_server, timeout=60.0) as nextcloud:
        settings = nextcloud.get("/frontend/settings").json()
        assert settings["filesTranslation"] is True and ".docx" in settings["supportedFilesFormat"]
        assert [lang["code"] for lang in nextcloud.get("/languages").json()] == ["de", "en"]
        detected = nextcloud.post("/detect", params={"q": "Ein Hund läuft über die Wiese.", "api_key": ""},
                                  headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert detected.status_code == 200 and detected.json()[0]["language"] == "de"
        multipart = {"q": (None, "<p>Ein Hund läuft.</p>"), "format": (None, "html"), "source": (None, "de"),
                     "target": (None, "en"), "api_key": (None, "")}
        response = nextcloud.post("/translate", files=multipart)
        assert response.status_code == 200, response.text
        assert response.json()["translatedText"].startswith("<p>")
        upload = {"file": ("notiz.html", b"<html><body><h1>Ein Hund</h1><p>Zwei M\xc3\xa4nner.</p></body></html>",
                           "text/html"), "format": (None, "html"), "source": (None, "de"), "target": (None, "en"),
                  "api_key": (None, "")}
        response = nextcloud.post("/translate_file", files=upload)
        assert response.status_code == 200, response.text
        downloaded = nextcloud.get(response.json()["translatedFileUrl"])
        assert downloaded.status_code == 200 and "notiz.html" in downloaded.headers["content-disposition"]
        assert tags_of(downloaded.text) == [("start", "html", ()), ("start", "body", ()), ("start", "h1", ()),
                                            ("end", "h1"), ("start", "p", ()), ("end", "p"), ("end", "body"),
                                            ("end", "html")]
        suggestion = nextcloud.post("/suggest", data={"q": "Hund", "s": "dog", "source": "de", "target": "en",
                                                      "api_key": ""})
        assert suggestion.status_code == 403 and "error" in suggestion.json() and "success" not in suggestion.json()


def test_weblate_markers_come_back_intact(live_server):
    """WeblateOrg/weblate weblate/machinery/libretranslate.py: POST /translate JSON {api_key, q: [...], source,
    target} (no format), reading translatedText as a list by index; weblate/machinery/base.py replaces each
    placeholder by [X<offset>X] and restores it only where it comes back verbatim, in batches of 20."""
    strings = [f"Klicke auf [X{i}X], um {i} Dateien zu speichern." for i in range(10, 30)]
    strings[0] = "[X0X] Hund läuft über die [X25X] Wiese [X40X]"
    accept_utf8 = {"Accept": "application/json; charset=utf-8"}
    with httpx.Client(base_url=live_server, timeout=60.0, headers=accept_utf8) as weblate:
        assert "de" in [lang["code"] for lang in weblate.get("/languages").json()]
        response = weblate.post("/translate", json={"api_key": "", "q": strings, "source": "de", "target": "en"})
    assert response.status_code == 200, response.text
    translations = response.json()["translatedText"]
    assert len(translations) == 20
    marker = re.compile(r"\[X\d+X\]")
    for string, translation in zip(strings, translations):
        assert marker.findall(translation) == marker.findall(string)  # each one verbatim, in order
    assert translations[0].startswith("[X0X] ") and translations[0].endswith(" [X40X]")


def test_libretranslatepy_and_deep_translator(live_server):
    """The PyPI clients: libretranslatepy (form POSTs) and deep-translator (query-string POSTs)."""
    from deep_translator import LibreTranslator
    from libretranslatepy import LibreTranslateAPI

    client = LibreTranslateAPI(live_server + "/")
    assert client.translate("Ein Hund läuft.", "de", "en")
    assert client.detect("Ein Hund läuft über die Wiese.")[0]["language"] == "de"
    assert "de" in [lang["code"] for lang in client.languages()]
    # deep-translator insists on a key even for a server that needs none: any is accepted where keys are off
    deep = LibreTranslator(source="de", target="en", custom_url=live_server + "/", use_free_api=False, api_key="none")
    sentence = "Ein Hund läuft über die Wiese."
    assert deep.translate(sentence) == client.translate(sentence, "de", "en")


NODE_CLIENT = REPO / ".node-clients" / "node_modules" / "libretranslate"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(not NODE_CLIENT.is_dir(), reason="the npm client is not installed (make node-clients)")
def test_npm_libretranslate_client(live_server):
    """npm `libretranslate` 1.0.1 (dist/translate.js): GET /languages (code), then POST /translate JSON
    {q, source, target, format, apiKey}; returns translatedText."""
    script = (f"const {{translate}} = require({json.dumps(str(NODE_CLIENT))});"
              f"translate({{query: 'Ein Hund läuft.', source: 'de', target: 'en', apiurl: {json.dumps(live_server)}}})"
              ".then(t => console.log(JSON.stringify(t))).catch(e => {console.error(e); process.exit(1)});")
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == httpx.post(f"{live_server}/translate", json={
        "q": "Ein Hund läuft.", "source": "de", "target": "en"}).json()["translatedText"]


# --- the contract details ---------------------------------------------------------------------------
def test_errors_keys_cors_codes_and_alternatives(registry):
    from service.app import create_app
    from service.settings import ServiceSettings

    app = create_app(ServiceSettings(api_keys=["k1"], max_body_bytes=2000, max_file_bytes=500), registry)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60.0) as c:
        missing = c.post("/translate", json={"q": "Hallo", "source": "de", "target": "en"})
        assert missing.status_code == 400 and "API key" in missing.json()["error"]
        empty = c.post("/translate", json={"q": "Hallo", "source": "de", "target": "en", "api_key": ""})
        assert empty.status_code == 400
        wrong = c.post("/translate", json={"q": "Hallo", "source": "de", "target": "en", "api_key": "nope"})
        assert wrong.status_code == 403 and wrong.json() == {"error": "invalid API key"}
        big = c.post("/translate", json={"q": "Hund " * 1000, "api_key": "k1"})
        assert big.status_code == 413 and "error" in big.json()
        big_file = c.post("/translate_file", data={"api_key": "k1", "source": "de", "target": "en"},
                          files={"file": ("a.txt", b"Hund " * 2000)})
        assert big_file.status_code == 413 and "error" in big_file.json()
        ok = {"api_key": "k1"}
        for source, target in [("DE", "EN"), ("de_DE", "en-US"), ("de-AT", "en_GB")]:
            answer = c.post("/translate", json={"q": "Ein Hund.", "source": source, "target": target, **ok})
            assert answer.status_code == 200, (source, target, answer.text)
        alternatives = c.post("/translate", json={"q": "Ein Hund läuft.", "source": "de", "target": "en",
                                                  "alternatives": 10, **ok})
        assert alternatives.status_code == 200 and len(alternatives.json()["alternatives"]) == 10
        assert c.post("/translate", json={"q": "Hund", "source": "de", "target": "en", "alternatives": 11, **ok}
                      ).status_code == 400
        assert c.post("/languages").status_code == 405 and c.get("/languages").status_code == 200
        assert c.get("/spec").json()["paths"]["/translate"]
        settings = c.get("/frontend/settings").json()
        assert settings["frontendTimeout"] == 500 and settings["keyRequired"] is True
        preflight = c.options("/translate", headers={"Origin": "https://page.example",
                                                     "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "*"
        native = c.options("/v1/translate", headers={"Origin": "https://page.example",
                                                     "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in native.headers  # the native API stays closed by default
        unknown = c.post("/translate", json={"q": "Hund", "source": "xx", "target": "en", **ok})
        assert unknown.status_code == 400 and "error" in unknown.json()


def test_files_formats_limits_and_names(live_server, tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Ein Hund", level=1)
    paragraph = document.add_paragraph("Ein Mann ")
    paragraph.add_run("läuft").italic = True
    paragraph.add_run(" über die Wiese.")
    buffer = io.BytesIO()
    document.save(buffer)
    with httpx.Client(base_url=live_server, timeout=60.0) as c:
        response = c.post("/translate_file", data={"source": "de", "target": "en"},
                          files={"file": ("../../etc/Brief an Anna.docx", buffer.getvalue())})
        assert response.status_code == 200, response.text
        url = response.json()["translatedFileUrl"]
        assert url.startswith(live_server + "/download_file/") and url.endswith(".Brief_an_Anna.docx")
        translated = docx.Document(io.BytesIO(c.get(url).content))
        assert [p.style.name for p in translated.paragraphs] == ["Heading 1", "Normal"]
        assert [r.italic for r in translated.paragraphs[1].runs] == [None, True, None]
        assert "Mann" not in translated.paragraphs[1].text
        text = c.post("/translate_file", data={"source": "de", "target": "en"},
                      files={"file": ("a.txt", "Ein Hund.\n\nZwei Männer.\n".encode())})
        assert c.get(text.json()["translatedFileUrl"]).text.count("\n") == 3
        refused = c.post("/translate_file", data={"source": "de", "target": "en"}, files={"file": ("a.exe", b"MZ")})
        assert refused.status_code == 400 and "not supported" in refused.json()["error"]
        broken = c.post("/translate_file", data={"source": "de", "target": "en"}, files={"file": ("a.docx", b"PK")})
        assert broken.status_code == 400 and "error" in broken.json()
        assert c.post("/translate_file", data={"source": "de"}).status_code == 400
        for name in ["..%2F..%2Fetc%2Fpasswd", "nothing.txt", "0" * 32 + ".a.txt", "%2E%2E", ".%2Fx"]:
            assert c.get(f"/download_file/{name}").status_code == 404


def test_translated_files_expire(tmp_path):
    from service.files import FileGone, FileStore, safe_name

    store = FileStore(str(tmp_path), expiry_s=60)
    stored = store.put("brief.txt", b"x")
    assert store.path(stored).read_bytes() == b"x"
    old = store.path(stored).stat().st_mtime - 61
    os.utime(tmp_path / stored, (old, old))
    with pytest.raises(FileGone):
        store.path(stored)
    assert list(tmp_path.iterdir()) == []
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("C:\\Users\\x\\Brief.docx") == "Brief.docx"
    assert safe_name("Überblick 2026.docx") == "Überblick_2026.docx" and safe_name("") == "file"
    assert safe_name("x" * 300 + ".docx").endswith(".docx") and len(safe_name("x" * 300 + ".docx")) <= 120


def test_the_native_api_takes_html_too(live_server):
    with httpx.Client(base_url=live_server, timeout=60.0) as c:
        answer = c.post("/v1/translate", json={"text": POSTS[1], "source": "de", "target": "en", "format": "html"})
    assert answer.status_code == 200, answer.text
    translation = answer.json()["translations"][0]
    assert tags_of(translation["text"]) == tags_of(POSTS[1]) and len(translation["sentences"]) == 2
