"""Load and overload against a real `seq2seq serve` process on loopback: 64 concurrent clients get correct
answers with flat memory; beyond capacity the server sheds load with fast 503s, keeps answering /health
and recovers; one huge request does not stall the others. The two-minute run is marked slow."""
import statistics
import threading
import time

import httpx
import pytest

from tests.loadgen import SENTENCES, expected_translations, run_load, serve

QUEUE = 256  # sentences; 64 clients of one sentence stay well below, 64 clients of 16 go far beyond


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("load") / "server.log"
    with serve(checkpoint, log, queue_sentences=str(QUEUE)) as running:
        yield running


@pytest.fixture(scope="module")
def greedy(server) -> dict[str, str]:
    return expected_translations(server.url, SENTENCES, beam_size=1)


def _assert_clean(report) -> None:
    print(report.summary())
    assert report.errors == [], report.errors[:5]
    assert report.statuses == {200: report.requests}, report.summary()
    assert report.wrong == 0, report.summary()


def _rate(report) -> float:
    return report.requests / max(report.seconds, 1e-9)


def test_64_clients_short(server, greedy):
    one = run_load(server, greedy, clients=1, seconds=3, max_requests=500, beam_size=1)  # the baseline, this run
    batches_before, requests_before = _batches_and_requests(server.url)
    report = run_load(server, greedy, clients=64, seconds=6, max_requests=5000, beam_size=1)
    batches_after, requests_after = _batches_and_requests(server.url)
    batches, requests = batches_after - batches_before, requests_after - requests_before
    _assert_clean(one)
    _assert_clean(report)
    print(f"{requests:.0f} requests in {batches:.0f} decoder batches; one client: {_rate(one):.1f}/s")
    # Dynamic batching: concurrent requests share decoder batches. (Not their rate against one client's: with a
    # tiny model on 2 cores, HTTP and the clients' own work are most of a request: 64 clients ran at 0.95-1.2x one
    # client's rate, on an AVX2 host, at this commit and before it.)
    assert requests / batches >= 2, (batches, requests, report.summary())  # 4.9 seen; 1 without batching
    assert report.memory_growth_mb() < 50, report.summary()


@pytest.mark.slow
def test_64_clients_two_minutes(server, greedy):
    """The benchmark in BENCHMARKS.md (Reliability): `pytest -m slow tests/test_load.py -s`."""
    report = run_load(server, greedy, clients=64, seconds=120, max_requests=200_000, beam_size=1)
    _assert_clean(report)
    assert report.memory_growth_mb() < 30, report.summary()


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


def _queue_sentences(url: str) -> float:
    return _metric(url, "seq2seq_queue_sentences")


def _batches_and_requests(url: str) -> tuple[float, float]:
    return _metric(url, "seq2seq_batch_requests_count"), _metric(url, "seq2seq_batch_requests_sum")


def _probe(url: str, body: dict, stop: threading.Event, health: list, translations: list) -> None:
    """Beside the load, one client that waits for each answer: /health and a translation every 0.1 s, timed.
    Its timeout is well past the server's own (30 s, then 504), so every probe gets the server's answer
    however busy the machine (10 s once cut an admitted request short on a loaded 2-core machine)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            health.append(_timed(http.get, "/health"))
            translations.append(_timed(http.post, "/v1/translate", json=body))
            stop.wait(0.1)


def _timed(send, *args, **kwargs) -> tuple:
    started = time.perf_counter()
    try:
        status = send(*args, **kwargs).status_code
    except httpx.HTTPError as err:
        status = repr(err)
    return status, time.perf_counter() - started


def test_overload_sheds_fast_503s_keeps_health_and_recovers(server, greedy):
    beam5 = expected_translations(server.url, SENTENCES, beam_size=5)
    before = run_load(server, greedy, clients=8, seconds=3, max_requests=200, beam_size=1)  # the baseline, this run
    _assert_clean(before)
    health: list = []
    probes: list = []
    stop = threading.Event()
    # A full-size request needs a quarter of the queue free at once, which the load hardly ever leaves.
    body = {"text": (SENTENCES * 8)[:64], "beam_size": 5}
    prober = threading.Thread(target=_probe, args=(server.url, body, stop, health, probes))
    prober.start()
    try:
        report = run_load(server, beam5, clients=64, seconds=5, max_requests=5000, sentences_per_request=16,
                          beam_size=5)
    finally:
        stop.set()
        prober.join()
    refused = [seconds for status, seconds in probes if status == 503]
    print(report.summary(), f"; probe statuses {[status for status, _ in probes]}",
          f"; probe 503 median {1000 * statistics.median(refused or [float('nan')]):.0f} ms",
          f"; /health max {max(s for _, s in health):.3f} s")
    assert report.errors == [] and report.wrong == 0
    assert set(report.statuses) <= {200, 503} and report.statuses.get(503, 0) > 0, report.summary()
    assert report.statuses.get(200, 0) > 0  # shedding, not refusing everything
    # 200 or a shed 503; a 504 is the server's own timeout for an admitted request on a slow machine
    assert {status for status, _ in probes} <= {200, 503, 504}, probes
    # Fast: a 503 is answered before any decoding. Timed on the probe, which sends one request at a time:
    # the load's 64 clients resend at once after each 503, so their own 503s queue behind each other. Judged
    # against the load's 200s, as the clients share the 2 cores with the server and absolute figures swing.
    # Whether the probe meets a full queue depends on the machine's speed (on a quiet one all four of its
    # requests were once admitted), so the timing is checked on the 503s it got; the shedding itself is
    # asserted on the load above, where 503s always occur.
    if refused:
        assert statistics.median(refused) < min(1.0, report.percentile(200, 0.5) / 3), "503s must be fast"
    # paced by the probe's own requests
    assert all(status == 200 for status, _ in health) and len(health) >= 3, health[:5]
    # /health is never queued behind translations: even its slowest answer beats the typical translation.
    assert max(seconds for _, seconds in health) < report.percentile(200, 0.5), "/health stalled under overload"

    deadline = time.time() + 60  # recovery: the queue drains and requests are served again at once
    while _queue_sentences(server.url) > 0 and time.time() < deadline:
        time.sleep(0.2)
    assert _queue_sentences(server.url) == 0
    after = run_load(server, greedy, clients=8, seconds=3, max_requests=200, beam_size=1)
    _assert_clean(after)
    assert after.percentile(200, 0.5) < 3 * before.percentile(200, 0.5), (before.summary(), after.summary())


def _queued(url: str) -> float:
    metrics = httpx.get(url + "/metrics", timeout=30).text
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("seq2seq_queue_sentences "))


def test_one_huge_request_does_not_stall_the_others(server, greedy):
    """10 texts of 2,000 characters (210 sentences once split, the most that the default max_chars allows) at
    beam 10 beside small requests: it is decoded in turns of one batch, so the small ones keep being answered,
    each waiting about one turn, not the whole request."""
    long_sentence = ("Ein alter Mann mit einem roten Hut und einer blauen Jacke fährt am Morgen mit dem Fahrrad "
                     "durch die Stadt, und ein kleiner Hund läuft hinterher. " * 20)[:2000]
    answers: dict = {}

    def send_huge():
        started = time.perf_counter()
        response = httpx.post(server.url + "/v1/translate", json={"text": [long_sentence] * 10, "beam_size": 10},
                              timeout=300)
        answers["huge"] = (response, time.perf_counter() - started)

    huge = threading.Thread(target=send_huge)
    huge.start()
    while huge.is_alive() and _queued(server.url) == 0:  # until the huge request is admitted
        pass
    latencies = []
    with httpx.Client(base_url=server.url, timeout=300) as http:
        while huge.is_alive():
            started = time.perf_counter()
            response = http.post("/v1/translate", json={"text": SENTENCES[0], "beam_size": 1})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.json()["translations"][0]["text"] == greedy[SENTENCES[0]]
    huge.join()
    response, huge_seconds = answers["huge"]
    print(f"huge request {huge_seconds:.1f} s; {len(latencies)} small requests beside it: "
          f"median {sorted(latencies)[len(latencies) // 2]:.2f} s, max {max(latencies):.2f} s")
    assert response.status_code == 200 and len(response.json()["translations"]) == 10
    assert len(set(t["text"] for t in response.json()["translations"])) == 1  # the same sentence, the same answer
    assert len(latencies) >= 5, "small requests waited for the whole huge one"
    assert statistics.median(latencies) < huge_seconds / 4 and max(latencies) < huge_seconds / 2
