"""The HTTP service: native and LibreTranslate APIs, dynamic batching under concurrency, errors, operations."""
import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from seq2seq.errors import UserError
from service.app import create_app
from service.settings import ServiceSettings, settings_from
from tests.conftest import run_cli

SENTENCES = ["Ein Hund läuft über die Wiese.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch.",
             "Ein kleines Mädchen isst einen Apfel.", "Drei Kinder springen in einen See."]


def client_for(registry, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(**settings), registry))


@pytest.fixture(scope="module")
def client(registry):
    with client_for(registry) as c:
        yield c


def test_native_api_translates_in_order_and_agrees_with_the_cli(client, checkpoint):
    response = client.post("/v1/translate", json={"text": SENTENCES, "source": "de", "target": "en", "beam_size": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "de-en" and body["elapsed_ms"] > 0
    texts = [t["text"] for t in body["translations"]]
    cli = run_cli("translate", "--checkpoint", checkpoint, "--beam-size", "3", stdin="\n".join(SENTENCES) + "\n")
    assert cli.returncode == 0, cli.stderr
    assert texts == cli.stdout.splitlines()
    single = client.post("/v1/translate", json={"text": SENTENCES[1], "beam_size": 3}).json()
    assert single["translations"][0]["text"] == texts[1]  # source/target optional with one model


def test_native_api_attention_and_alternatives(client):
    body = client.post("/v1/translate", json={"text": SENTENCES[0], "beam_size": 4, "n_best": 3,
                                              "return_attention": True}).json()
    result = body["translations"][0]
    assert len(result["attention"]) == len(result["target_pieces"]) + 1
    assert all(len(row) == len(result["source_pieces"]) + 1 for row in result["attention"])
    assert abs(sum(result["attention"][0]) - 1) < 1e-2
    assert len(result["alternatives"]) == 2 and result["alternatives"][0]["score"] <= result["score"]
    plain = client.post("/v1/translate", json={"text": SENTENCES[0]}).json()["translations"][0]
    assert set(plain) == {"text", "score"}


def test_empty_text_translates_to_empty(client):
    body = client.post("/v1/translate", json={"text": ["", "  ", SENTENCES[0]]}).json()
    assert [t["text"] for t in body["translations"]][:2] == ["", "  "]  # whitespace comes back as it was


def test_concurrent_requests_each_get_their_own_answer(live_server, client):
    expected = {s: client.post("/v1/translate", json={"text": s, "beam_size": 1}).json()["translations"][0]["text"]
                for s in SENTENCES}

    async def one(http: httpx.AsyncClient, i: int):
        sentence = SENTENCES[i % len(SENTENCES)]
        response = await http.post("/v1/translate", json={"text": sentence, "beam_size": 1})
        return sentence, response

    async def all_at_once():
        async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
            return await asyncio.gather(*(one(http, i) for i in range(64)))

    results = asyncio.run(all_at_once())
    assert all(r.status_code == 200 for _, r in results)
    assert all(r.json()["translations"][0]["text"] == expected[s] for s, r in results)
    metrics = httpx.get(f"{live_server}/metrics").text
    batches = [line for line in metrics.splitlines() if line.startswith("seq2seq_batch_requests_count")]
    total = [line for line in metrics.splitlines() if line.startswith("seq2seq_batch_requests_sum")]
    assert float(batches[0].split()[-1]) < float(total[0].split()[-1])  # requests were batched together


def test_a_dead_decoder_process_is_restarted(registry):
    with client_for(registry) as c:
        before = c.post("/v1/translate", json={"text": SENTENCES[0]}).json()["translations"][0]["text"]
        decoder = c.app.state.service.batcher.decoders[0]
        decoder.process.kill()  # as the kernel's out-of-memory killer would
        decoder.process.join()
        response = c.post("/v1/translate", json={"text": SENTENCES[0]})
        assert response.status_code == 200, response.text
        assert response.json()["translations"][0]["text"] == before
        assert c.get("/health").status_code == 200


def test_two_decoder_processes_share_the_queue_and_answer_each_request(registry, client):
    expected = client.post("/v1/translate", json={"text": SENTENCES, "beam_size": 2}).json()["translations"]
    with client_for(registry, decoders=2) as c, ThreadPoolExecutor(8) as pool:
        decoders = c.app.state.service.batcher.decoders
        assert len({d.process.pid for d in decoders}) == 2 and all(d.process.is_alive() for d in decoders)
        assert c.app.state.service.settings.threads_per_decoder == max(1, (os.cpu_count() or 1) // 2)
        post = lambda i: c.post("/v1/translate", json={"text": SENTENCES[i % len(SENTENCES)], "beam_size": 2})  # noqa: E731
        responses = list(pool.map(post, range(24)))
    assert [r.json()["translations"][0]["text"] for r in responses] == [
        expected[i % len(SENTENCES)]["text"] for i in range(24)]
    assert all(d.process is None for d in decoders)  # stopped with the service


def test_invalid_fields_and_json_get_422(client):
    assert client.post("/v1/translate", json={"text": "x", "beam_size": 0}).status_code == 422
    assert client.post("/v1/translate", json={"text": "x", "beam_size": 1000}).status_code == 422
    assert client.post("/v1/translate", json={"text": "x", "colour": "red"}).status_code == 422
    assert client.post("/v1/translate", json={"text": ["x"] * 65}).status_code == 422
    assert client.post("/v1/translate", json={"text": "x" * 20_001}).status_code == 422  # over max_chars
    assert client.post("/v1/translate", json={"text": "x", "beam_size": 2, "n_best": 3}).status_code == 422
    bad_json = client.post("/v1/translate", content=b'{"text": ', headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "detail" in bad_json.json()
    assert client.post("/v1/translate", json=[1, 2]).status_code == 422


def test_unknown_language_pair_gets_400(client):
    response = client.post("/v1/translate", json={"text": "x", "source": "fr", "target": "en"})
    assert response.status_code == 400 and "de-en" in response.json()["detail"]


def test_oversized_body_gets_413_before_parsing(registry):
    with client_for(registry, max_body_bytes=1000) as c:
        response = c.post("/v1/translate", content=b'{"text": "' + b"a" * 5000 + b'"}',
                          headers={"content-type": "application/json"})
        assert response.status_code == 413
        chunked = c.post("/v1/translate", content=iter([b'{"text": "', b"a" * 5000, b'"}']),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 413


def test_full_queue_answers_503_with_retry_after(registry):
    with client_for(registry, queue_sentences=64, max_sentences=64) as c:
        batcher = c.app.state.service.batcher
        batcher.room.take(62)  # other requests hold all but two places
        try:
            response = c.post("/v1/translate", json={"text": SENTENCES[:3]})
            assert response.status_code == 503 and response.headers["retry-after"]
            assert "62 sentences already queued" in response.json()["detail"]
            assert c.post("/v1/translate", json={"text": SENTENCES[:2]}).status_code == 200
        finally:
            batcher.room.give_back(62)
        assert batcher.room.queued == 0


def test_a_request_split_into_turns_is_admitted_whole(registry):
    """A tiny token budget decodes each sentence in its own turn; with room for all but one sentence the
    request is refused before any turn is decoded, and a request that fits is answered in full."""
    def decoded_sentences() -> float:
        return _metric(c.get("/metrics").text, "seq2seq_batch_sentences_sum")

    with client_for(registry, queue_sentences=64, max_sentences=64, batch_max_tokens=1) as c:
        batcher = c.app.state.service.batcher
        batcher.room.take(64 - len(SENTENCES) + 1)
        try:
            assert c.post("/v1/translate", json={"text": SENTENCES}).status_code == 503
            assert decoded_sentences() == 0  # refused before its first turn
        finally:
            batcher.room.give_back(64 - len(SENTENCES) + 1)
        response = c.post("/v1/translate", json={"text": SENTENCES})
        assert response.status_code == 200 and len(response.json()["translations"]) == len(SENTENCES)
        assert decoded_sentences() == len(SENTENCES)
        assert _metric(c.get("/metrics").text, "seq2seq_batch_sentences_count") == len(SENTENCES)  # one per turn
        assert batcher.room.queued == 0


def _metric(exposition: str, name: str) -> float:
    """One unlabelled sample from a Prometheus text exposition."""
    return next(float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " "))


def test_a_queue_smaller_than_one_request_is_refused_at_startup():
    with pytest.raises(UserError, match="queue_sentences .* must be at least max_sentences"):
        settings_from({"queue_sentences": 10, "max_sentences": 64}, environ={})


def test_slow_translation_times_out_with_504(registry):
    with client_for(registry, request_timeout_s=0.001) as c:
        assert c.post("/v1/translate", json={"text": SENTENCES * 10}).status_code == 504
        assert c.get("/health").status_code == 200


def test_api_keys_and_rate_limit(registry):
    with client_for(registry, api_keys=["secret-key"], rate_limit_per_minute=3) as c:
        assert c.post("/v1/translate", json={"text": "Hallo"}).status_code == 403
        wrong = c.post("/v1/translate", json={"text": "Hallo"}, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 403
        headers = {"Authorization": "Bearer secret-key"}
        assert c.post("/v1/translate", json={"text": "Hallo"}, headers=headers).status_code == 200
        assert c.post("/translate", data={"q": "Hallo", "source": "de", "target": "en",
                                          "api_key": "secret-key"}).status_code == 200
        assert c.post("/translate", data={"q": "Hallo", "source": "de", "target": "en"}).status_code == 400  # as LT
        assert c.post("/translate", data={"q": "Hallo", "source": "de", "target": "en", "api_key": "wrong"}
                      ).status_code == 403
        assert c.post("/v1/translate", json={"text": "Hallo"}, headers=headers).status_code == 200
        limited = c.post("/v1/translate", json={"text": "Hallo"}, headers=headers)
        assert limited.status_code == 429 and limited.headers["retry-after"]
        assert "secret-key" not in c.get("/metrics").text


def test_cors_origins_are_configurable(registry):
    with client_for(registry, cors_origins=["https://example.org"]) as c:
        response = c.options("/v1/translate", headers={"Origin": "https://example.org",
                                                       "Access-Control-Request-Method": "POST"})
        assert response.headers["access-control-allow-origin"] == "https://example.org"


def test_health_ready_metrics_and_request_ids(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["models"] == ["de-en"]
    response = client.post("/v1/translate", json={"text": "Hallo"}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    metrics = client.get("/metrics").text
    for name in ("seq2seq_requests_total", "seq2seq_request_seconds_bucket", "seq2seq_batch_sentences_bucket",
                 "seq2seq_queue_sentences", "seq2seq_sentences_translated_total", "seq2seq_target_tokens_total"):
        assert name in metrics
    assert 'route="/v1/translate",status="200"' in metrics


def test_not_ready_until_models_are_loaded(checkpoint):
    settings = ServiceSettings(models={"de-en": checkpoint}, device="cpu")
    with TestClient(create_app(settings)) as c:  # loads in the background
        for _ in range(200):
            if c.get("/ready").status_code == 200:
                break
            assert c.get("/health").status_code == 200
            time.sleep(0.05)
        assert c.get("/ready").status_code == 200
        assert c.post("/v1/translate", json={"text": "Hallo"}).status_code == 200


def test_ready_says_why_when_a_model_cannot_be_loaded(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with TestClient(create_app(ServiceSettings(models={"de-en": str(broken)}, device="cpu"))) as c:
        for _ in range(600):  # until the background load has ended, one way or the other
            if c.get("/ready").json()["status"] != "loading":
                break
            time.sleep(0.05)
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed" and "broken.pt" in ready.json()["error"]
        refused = c.post("/v1/translate", json={"text": "Hallo"})
        assert refused.status_code == 503 and "could not be loaded" in refused.json()["detail"]


def test_openapi_shows_the_limits(client):
    schema = client.get("/openapi.json").json()
    props = schema["components"]["schemas"]["TranslateRequest"]["properties"]
    assert {"text", "source", "target", "beam_size", "n_best", "max_length_ratio", "return_attention"} <= set(props)
    assert any(option.get("maximum") == 10 for option in props["beam_size"]["anyOf"])
    routes = {"/v1/translate", "/translate", "/languages", "/detect", "/health", "/ready", "/metrics"}
    assert routes <= set(schema["paths"])


def test_libretranslate_json_form_and_lists(client):
    form = client.post("/translate", data={"q": SENTENCES[0], "source": "de", "target": "en", "format": "text"})
    assert form.status_code == 200 and form.json()["translatedText"]
    as_json = client.post("/translate", json={"q": SENTENCES[:2], "source": "de", "target": "en"})
    assert isinstance(as_json.json()["translatedText"], list) and len(as_json.json()["translatedText"]) == 2
    auto = client.post("/translate", json={"q": SENTENCES[0], "source": "auto", "target": "en"}).json()
    assert auto["detectedLanguage"]["language"] == "de" and auto["translatedText"] == form.json()["translatedText"]
    alternatives = client.post("/translate", json={"q": SENTENCES[0], "source": "de", "target": "en",
                                                   "alternatives": 2}).json()
    assert len(alternatives["alternatives"]) == 2
    missing = client.post("/translate", json={"source": "de", "target": "en"})
    assert missing.status_code == 400 and "q" in missing.json()["error"]
    unknown = client.post("/translate", data={"q": "x", "source": "fr", "target": "en"})
    assert unknown.status_code == 400 and "error" in unknown.json()
    assert client.post("/translate", content=b"{bad", headers={"content-type": "application/json"}).status_code == 400


def test_libretranslate_languages_with_content_type_on_get(client):
    languages = client.get("/languages", headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert {"code": "de", "name": "German", "targets": ["en"]} in languages


def test_libretranslate_python_client(live_server):
    from libretranslatepy import LibreTranslateAPI

    api = LibreTranslateAPI(live_server)
    assert api.translate(SENTENCES[1], "de", "en").strip()
    assert any(lang["code"] == "de" for lang in api.languages())
    detected = api.detect(SENTENCES[2])
    assert detected[0]["language"] == "de" and 0 <= detected[0]["confidence"] <= 100


def test_settings_from_environment(checkpoint):
    settings = settings_from({"port": 9000}, environ={"SEQ2SEQ_MODELS": f"de-en={checkpoint}",
                                                      "SEQ2SEQ_API_KEYS": "a,b", "SEQ2SEQ_PORT": "8001",
                                                      "SEQ2SEQ_MAX_SENTENCES": "16"})
    assert settings.models == {"de-en": checkpoint} and settings.api_keys == ["a", "b"]
    assert settings.port == 9000 and settings.max_sentences == 16


@pytest.mark.parametrize("kind", ["int8", "bf16"])
def test_reduced_precision_service_answers_like_the_cli(registry, checkpoint, kind):
    with client_for(registry, precision=kind) as quantized:
        response = quantized.post("/v1/translate", json={"text": SENTENCES[:3], "beam_size": 2})
    assert response.status_code == 200, response.text
    cli = run_cli("translate", "--checkpoint", checkpoint, "--precision", kind, "--beam-size", "2",
                  stdin="\n".join(SENTENCES[:3]) + "\n")
    assert [t["text"] for t in response.json()["translations"]] == cli.stdout.splitlines()
    assert settings_from({}, environ={"SEQ2SEQ_QUANTIZE": kind}).quantize == kind
    with pytest.raises(UserError, match="quantize"):
        settings_from({}, environ={"SEQ2SEQ_QUANTIZE": "int4"})


def test_serve_cli_rejects_bad_checkpoints_and_settings(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = run_cli("serve", "--checkpoint", str(tmp_path / "bad.pt"), timeout=60)
    assert result.returncode == 2 and "not a seq2seq checkpoint" in result.stderr
    result = run_cli("serve", "--port", "0", "--checkpoint", str(tmp_path / "bad.pt"), timeout=60)
    assert result.returncode == 2 and "port" in result.stderr
    result = run_cli("serve", timeout=60)
    assert result.returncode == 2 and "no model" in result.stderr


def test_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/v1/translate" in page.text and "<script>" in page.text


def test_sigterm_lets_in_flight_requests_finish(checkpoint):
    import signal
    import socket
    import subprocess
    import sys
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "seq2seq", "serve", "--checkpoint", checkpoint, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answers = []
        slow = threading.Thread(target=lambda: answers.append(httpx.post(
            url + "/v1/translate", json={"text": SENTENCES * 12, "beam_size": 10}, timeout=60)))
        slow.start()
        time.sleep(0.3)  # the request is being decoded
        server.send_signal(signal.SIGTERM)
        slow.join(timeout=60)
        assert answers and answers[0].status_code == 200
        assert len(answers[0].json()["translations"]) == len(SENTENCES) * 12
        # uvicorn re-raises the signal once it has shut down gracefully, so -SIGTERM is a clean exit here
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.stderr.read()
    finally:
        server.kill()


def test_a_client_that_writes_its_whole_body_first_still_reads_the_413(registry):
    """Python's urllib sends all of a body before it reads the answer: it gets the 413 and its message."""
    import urllib.error
    import urllib.request

    from tests.conftest import serve_in_thread

    with serve_in_thread(create_app(ServiceSettings(max_body_bytes=1000), registry)) as url:
        body = json.dumps({"text": "Hund " * 400_000}).encode()  # 2 MB
        request = urllib.request.Request(url + "/v1/translate", data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413 and "over 1000 bytes" in refused.value.read().decode()
