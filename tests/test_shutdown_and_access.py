"""A real `seq2seq serve` process: SIGTERM drains in-flight requests and refuses new ones, each request
answered exactly once; with API keys, requests without a valid one get 403 and never reach a model,
each key has its own rate limit, and no key ever appears in the logs or /metrics."""
import asyncio
import json
import signal
import time

import httpx

from tests.loadgen import SENTENCES, serve


def _access_log(log_text: str) -> list[dict]:
    return [json.loads(line) for line in log_text.splitlines() if line.startswith('{"ts"')]


def test_sigterm_drains_in_flight_requests_once_and_refuses_new_ones(checkpoint, tmp_path):
    with serve(checkpoint, tmp_path / "server.log", graceful_shutdown_s="30") as server:
        ids = [f"drain-{i:02d}" for i in range(16)]

        async def in_flight():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                async def one(request_id: str):
                    return await http.post("/v1/translate", json={"text": SENTENCES * 3, "beam_size": 5},
                                           headers={"X-Request-ID": request_id})

                tasks = [asyncio.ensure_future(one(i)) for i in ids]
                await asyncio.sleep(0.5)  # all sent, being decoded
                server.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                try:  # a new connection after SIGTERM: refused, never served
                    late = await httpx.AsyncClient(timeout=5).post(server.url + "/v1/translate", json={"text": "Hallo"})
                    late_outcome = late.status_code
                except httpx.HTTPError as err:
                    late_outcome = type(err).__name__
                return await asyncio.gather(*tasks), late_outcome

        started = time.perf_counter()
        responses, late = asyncio.run(in_flight())
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        drained = time.perf_counter() - started
        log = server.log.read_text()

    assert [r.status_code for r in responses] == [200] * len(ids)
    assert all(len(r.json()["translations"]) == len(SENTENCES) * 3 for r in responses)
    assert [r.headers["x-request-id"] for r in responses] == ids
    assert late in ("ConnectError", 503), late
    served = [entry["request_id"] for entry in _access_log(log) if entry["path"] == "/v1/translate"]
    assert sorted(i for i in served if i.startswith("drain-")) == ids  # each answered exactly once
    assert drained < 30 and "Application shutdown complete" in log


def _metric(url: str, name: str) -> float:
    """The sum over labels of one metric (0 when it has no samples yet)."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


KEY_A, KEY_B, WRONG = "key-A-5f1c9e0b7d", "key-B-8a2d4c6e1f", "wrong-3b7e9d1a5c"


def test_api_keys_rate_limits_and_no_key_in_logs_or_metrics(checkpoint, tmp_path):
    with serve(checkpoint, tmp_path / "server.log", "--api-key", KEY_A, "--api-key", KEY_B,
               rate_limit_per_minute="4") as server:
        url = server.url
        before = (_metric(url, "seq2seq_sentences_translated_total"), _metric(url, "seq2seq_batch_requests_count"))
        refused = [
            httpx.post(url + "/v1/translate", json={"text": "Hallo"}),
            httpx.post(url + "/v1/translate", json={"text": "Hallo"}, headers={"Authorization": f"Bearer {WRONG}"}),
            httpx.post(url + "/v1/translate", json={"text": "Hallo"}, headers={"Authorization": "Bearer"}),
            httpx.post(url + f"/v1/translate?api_key={WRONG}", json={"text": "Hallo"}),
            httpx.post(url + "/translate", data={"q": "Hallo", "source": "de", "target": "en", "api_key": WRONG}),
            httpx.post(url + "/translate", json={"q": "Hallo", "source": "de", "target": "en", "api_key": [KEY_A]}),
            httpx.post(url + "/translate", json={"q": "Hallo", "source": "de", "target": "en"}),
            httpx.post(url + "/detect", data={"q": "Hallo", "api_key": KEY_A.upper()}),
        ]
        # LibreTranslate's routes answer a missing key (none, or not a string) with 400, as LibreTranslate does
        expected = [403, 403, 403, 403, 403, 400, 400, 403]
        assert [r.status_code for r in refused] == expected, [r.text for r in refused]
        assert all(WRONG not in r.text and KEY_A not in r.text for r in refused)
        after = (_metric(url, "seq2seq_sentences_translated_total"), _metric(url, "seq2seq_batch_requests_count"))
        assert after == before, "a refused request reached the model"

        bearer = {"Authorization": f"Bearer {KEY_A}"}
        allowed = [httpx.post(url + "/v1/translate", json={"text": "Hallo"}, headers=bearer),
                   httpx.post(url + f"/v1/translate?api_key={KEY_A}", json={"text": "Hallo"}),
                   httpx.post(url + "/translate",
                              data={"q": "Hallo", "source": "de", "target": "en", "api_key": KEY_A}),
                   httpx.post(url + "/detect", data={"q": "Hallo", "api_key": KEY_A})]
        assert [r.status_code for r in allowed] == [200] * 4, [r.text for r in allowed]
        assert _metric(url, "seq2seq_sentences_translated_total") == before[0] + 3
        limited = httpx.post(url + "/v1/translate", json={"text": "Hallo"}, headers=bearer)  # the 5th in a minute
        assert limited.status_code == 429 and limited.headers["retry-after"]
        other = httpx.post(url + "/v1/translate", json={"text": "Hallo"}, headers={"Authorization": f"Bearer {KEY_B}"})
        assert other.status_code == 200  # limits are per key
        metrics = httpx.get(url + "/metrics").text
        log = server.log.read_text()

    for secret in (KEY_A, KEY_B, WRONG, KEY_A.upper()):
        assert secret not in metrics and secret not in log
    statuses = [entry["status"] for entry in _access_log(log)]
    assert statuses.count(403) == expected.count(403) and statuses.count(400) == expected.count(400)
    assert statuses.count(429) == 1  # the log did record them
