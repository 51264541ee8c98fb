"""Service throughput and latency under concurrent clients, against offline batch translation of the same
sentences with the same settings, measured side by side in one run.

    python -m bench.service_throughput --checkpoint runs/multi30k_de_en/checkpoints/best.pt
        [--clients 1 8 32] [--decoders 2]

Each client sends one sentence per request and waits for the answer before sending the next. Reports
sentences/s, p50/p95/p99 latency, the server's peak resident memory, and service/offline throughput;
each figure is the median of --repeats runs, offline and service runs interleaved.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from seq2seq.corpus import read_lines
from seq2seq.translate import Translator

DEFAULT_SOURCE = Path("data/multi30k/test_2016_flickr.de.gz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoints: str | list[str], port: int, threads: int | None = None,
                 decoders: int = 1) -> subprocess.Popen:
    """`seq2seq serve` on `port` serving `checkpoints` with `decoders` decoder processes, once /ready answers 200."""
    env = {**os.environ, "SEQ2SEQ_QUEUE_SENTENCES": "100000", "SEQ2SEQ_DECODERS": str(decoders)}
    if threads:
        env["SEQ2SEQ_THREADS"] = str(threads)
    paths = [checkpoints] if isinstance(checkpoints, str) else checkpoints
    command = [sys.executable, "-m", "seq2seq", "serve", "--port", str(port)]
    for path in paths:
        command += ["--checkpoint", path]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready")


def peak_memory_mb(pid: int) -> float:
    """Peak resident memory of the server and its children (the decoder process), summed: an upper bound."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += peak_memory_mb(int(child))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            total += int(line.split()[1]) / 1024
    return total


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection that POSTs JSON and reads the answer: a load generator far
    lighter than a general client, so the clients take less of the CPU the server also runs on."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run_clients(port: int, sentences: list[str], clients: int, beam_size: int) -> tuple[float, list[float]]:
    """All sentences through `clients` concurrent one-sentence-at-a-time clients → (seconds, latencies)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sentence in sentences:
        queue.put_nowait(sentence)
    latencies: list[float] = []

    async def client() -> None:
        connection = KeepAliveClient("127.0.0.1", port)
        try:
            while not queue.empty():
                sentence = queue.get_nowait()
                started = time.perf_counter()
                status, body = await connection.post_json("/v1/translate", {"text": sentence, "beam_size": beam_size})
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                latencies.append(time.perf_counter() - started)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies


def mean_batch_size(url: str) -> float:
    """Sentences per decoding batch over the whole run, from the server's own metrics."""
    values = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(("seq2seq_batch_sentences_sum", "seq2seq_batch_sentences_count")):
            name, value = line.split()
            values[name] = float(value)
    return values["seq2seq_batch_sentences_sum"] / max(values["seq2seq_batch_sentences_count"], 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def service_benchmark(checkpoint: str, sentences: list[str], clients: list[int], beam_size: int = 5, repeats: int = 3,
                      server_threads: int | None = None, decoders: int = 1) -> dict:
    """Offline batch translation and the server under each number of clients, interleaved, medians of `repeats`."""
    translator = Translator(checkpoint, device="cpu")
    options = translator.options(beam_size=beam_size)
    port = free_port()
    server = start_server(checkpoint, port, server_threads, decoders)
    url = f"http://127.0.0.1:{port}"
    results: dict = {"sentences": len(sentences), "beam_size": beam_size, "decoders": decoders, "clients": {}}
    try:
        asyncio.run(run_clients(port, sentences[:50], 8, beam_size))  # warm-up
        offline_runs: list[float] = []
        service_runs: dict[int, list[tuple[float, list[float]]]] = {c: [] for c in clients}  # (sent/s, latencies)
        for _ in range(repeats):
            started = time.perf_counter()
            translator.translate(sentences, options)
            offline_runs.append(len(sentences) / (time.perf_counter() - started))
            for count in clients:
                seconds, latencies = asyncio.run(run_clients(port, sentences, count, beam_size))
                service_runs[count].append((len(sentences) / seconds, latencies))
        offline = statistics.median(offline_runs)
        results["offline_sentences_per_s"] = round(offline, 1)
        for count, runs in service_runs.items():
            throughput = statistics.median(r[0] for r in runs)
            latencies = [lat for r in runs for lat in r[1]]
            results["clients"][count] = {
                "sentences_per_s": round(throughput, 1), "vs_offline": round(throughput / offline, 3),
                "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
                "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
                "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}
        results["server_peak_mb"] = round(peak_memory_mb(server.pid), 1)
        results["mean_batch_sentences"] = round(mean_batch_size(url), 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server-threads", type=int, help="torch threads in each decoder process (default: the "
                        "cores divided among them)")
    parser.add_argument("--decoders", type=int, default=1, help="the server's decoder processes (SEQ2SEQ_DECODERS)")
    args = parser.parse_args()

    results = service_benchmark(args.checkpoint, read_lines(args.source)[: args.sentences], args.clients,
                                args.beam_size, args.repeats, args.server_threads, args.decoders)
    print(f"offline batch: {results['offline_sentences_per_s']} sent/s "
          f"(beam {args.beam_size}, {results['sentences']} sentences)")
    print("clients | sent/s | vs offline | p50 ms | p95 ms | p99 ms")
    for clients, r in results["clients"].items():
        print(f"{clients:7d} | {r['sentences_per_s']:6.1f} | {r['vs_offline']:10.2f} | {r['p50_ms']:6.1f} | "
              f"{r['p95_ms']:6.1f} | {r['p99_ms']:6.1f}")
    print(f"server peak memory: {results['server_peak_mb']} MB; "
          f"mean batch: {results['mean_batch_sentences']} sentences")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
