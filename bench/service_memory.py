"""Resident memory of a service serving several models: the HTTP process and the decoder process, each.

    python -m bench.service_memory --checkpoint A.pt --checkpoint B.pt

Starts `seq2seq serve` with the checkpoints, translates one sentence with each model (so that decoding
memory is counted too) and reports each process's current and peak resident memory (VmRSS, VmHWM).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx

from bench.service_throughput import free_port, start_server


def resident_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of one process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


def children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _role(pid: int) -> str:
    """'decoder_process', or 'resource_tracker' for multiprocessing's helper (a few MB)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "resource_tracker" if b"resource_tracker" in command else "decoder_process"


def measure(checkpoints: list[str]) -> dict:
    port = free_port()
    server = start_server(checkpoints, port)
    try:
        url = f"http://127.0.0.1:{port}"
        pairs = httpx.get(f"{url}/ready", timeout=10).json()["models"]
        for pair in pairs:
            source, target = pair.split("-")
            response = httpx.post(f"{url}/v1/translate", json={"text": "Ein Hund läuft im Park.", "source": source,
                                                               "target": target}, timeout=60)
            response.raise_for_status()
        return {"models": pairs, "http_process": resident_mb(server.pid),
                **{_role(pid): resident_mb(pid) for pid in children(server.pid)}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    args = parser.parse_args()
    print(json.dumps(measure(args.checkpoint), indent=2))


if __name__ == "__main__":
    main()
