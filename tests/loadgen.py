"""A bounded load generator for the service tests and the reliability benchmark: loopback only, a fixed
number of requests and a time limit, stopping by itself. It checks every answer against the expected
translation and samples the server's memory (its process and children) while it runs."""
from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import httpx

from tests.conftest import REPO

SENTENCES = ["Ein Hund läuft über die Wiese.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch.",
             "Ein kleines Mädchen isst einen Apfel.", "Drei Kinder springen in einen See.",
             "Ein Mann mit einem roten Hut fährt Fahrrad.", "Eine Gruppe von Menschen steht vor einem Gebäude.",
             "Ein Junge spielt im Schnee."]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (the decoder process), in MB."""
        return sum(_rss_kb(pid) for pid in _tree(self.process.pid)) / 1024


def _tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += _tree(int(child))
    return pids


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(checkpoint: str, log: Path, *args: str, **env: str) -> Iterator[Server]:
    """`seq2seq serve` in a subprocess on a free loopback port; SEQ2SEQ_* settings from `env`."""
    port = free_port()
    environ = {**os.environ, **{f"SEQ2SEQ_{k.upper()}": v for k, v in env.items()}}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--checkpoint", checkpoint, "--port",
                                    str(port), *args], cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
        yield server
    finally:
        process.kill()
        process.wait()


def wait_ready(server: Server, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert server.process.poll() is None, server.log.read_text()[-2000:]
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server not ready after {seconds} s")


def expected_translations(url: str, texts: list[str], **options) -> dict[str, str]:
    """What the server answers at rest, one request at a time: the reference under load."""
    with httpx.Client(base_url=url, timeout=60) as http:
        return {t: http.post("/v1/translate", json={"text": t, **options}).json()["translations"][0]["text"]
                for t in texts}


@dataclass
class LoadReport:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    wrong: int = 0
    errors: list[str] = field(default_factory=list)  # transport errors and time-outs
    latencies: dict[int, list[float]] = field(default_factory=dict)  # by status
    seconds: float = 0.0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)

    def percentile(self, status: int, q: float) -> float:
        values = sorted(self.latencies.get(status, []))
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    def memory_growth_mb(self, warmup: float = 0.2) -> float:
        """Resident memory at the end minus after the first `warmup` fraction of the run."""
        after = [mb for t, mb in self.rss_mb if t >= warmup * self.seconds]
        return after[-1] - after[0] if len(after) >= 2 else 0.0

    def summary(self) -> str:
        ok = self.statuses.get(200, 0)
        text = (f"{self.requests} requests in {self.seconds:.1f} s ({self.requests / max(self.seconds, 1e-9):.1f}/s), "
                f"statuses {dict(sorted(self.statuses.items()))}, wrong {self.wrong}, errors {len(self.errors)}")
        if ok:
            text += (f"; 200 latency p50/p95/p99 {1000 * self.percentile(200, .5):.0f}/"
                     f"{1000 * self.percentile(200, .95):.0f}/{1000 * self.percentile(200, .99):.0f} ms")
        if self.rss_mb:
            mbs = [mb for _, mb in self.rss_mb]
            text += (f"; RSS start {mbs[0]:.0f} MB, peak {max(mbs):.0f} MB, "
                     f"growth after warm-up {self.memory_growth_mb():+.1f} MB")
        return text


def run_load(server: Server, expected: dict[str, str], clients: int, seconds: float, max_requests: int,
             sentences_per_request: int = 1, timeout: float = 60, **options) -> LoadReport:
    """`clients` concurrent clients, each sending its next request as soon as it has an answer, until
    `max_requests` were sent or `seconds` passed; every 200 is checked against `expected`."""
    report = LoadReport()
    texts = list(expected)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_memory, args=(server, report, stop), daemon=True)
    started = time.perf_counter()
    sampler.start()
    try:
        asyncio.run(_clients(server.url, texts, expected, clients, started + seconds, max_requests,
                             sentences_per_request, timeout, options, report))
    finally:
        report.seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
    return report


def _sample_memory(server: Server, report: LoadReport, stop: threading.Event) -> None:
    started = time.perf_counter()
    while True:
        report.rss_mb.append((time.perf_counter() - started, server.rss_mb()))
        if stop.wait(0.5):
            report.rss_mb.append((time.perf_counter() - started, server.rss_mb()))
            return


async def _clients(url: str, texts: list[str], expected: dict[str, str], clients: int, deadline: float,
                   max_requests: int, per_request: int, timeout: float, options: dict, report: LoadReport) -> None:
    counter = iter(range(max_requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        async def client() -> None:
            for n in counter:
                if time.perf_counter() >= deadline:
                    return
                batch = [texts[(n + i) % len(texts)] for i in range(per_request)]
                await _one(http, batch, expected, options, report)

        await asyncio.gather(*(client() for _ in range(clients)))


async def _one(http: httpx.AsyncClient, batch: list[str], expected: dict[str, str], options: dict,
               report: LoadReport) -> None:
    sent = time.perf_counter()
    report.requests += 1
    try:
        response = await http.post("/v1/translate", json={"text": batch, **options})
    except httpx.HTTPError as err:
        report.errors.append(f"{type(err).__name__}: {err}")
        return
    seconds = time.perf_counter() - sent
    report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
    report.latencies.setdefault(response.status_code, []).append(seconds)
    if response.status_code == 200:
        got = [t["text"] for t in response.json()["translations"]]
        report.wrong += got != [expected[t] for t in batch]


def median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None
