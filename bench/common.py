"""What every benchmark needs: subprocesses timed with their own peak memory, medians, the matmul ceiling."""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

RESULTS_DIR = Path("bench/results")  # git-ignored
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K", "data/multi30k"))
IWSLT14 = Path(os.environ.get("SEQ2SEQ_IWSLT14", "../shared/data/iwslt14"))
PEER_MATCH = "configs/peer_match.yaml"  # the peers' model and hyper-parameters in our config


@dataclass
class Measured:
    wall_s: float
    peak_mb: float  # the process's own peak resident memory (children it waited for included)
    stdout: str
    stderr: str


def run_measured(command: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 timeout: float = 7200, stdin_path: Optional[Path] = None) -> Measured:
    """Run a command to completion; wall time and peak memory come from the kernel's accounting of that child."""
    log_dir = RESULTS_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time_ns()}"
    out_path, err_path = log_dir / f"{stamp}.out", log_dir / f"{stamp}.err"
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err, open(stdin_path or os.devnull) as stdin:
        process = subprocess.Popen(list(command), stdin=stdin, stdout=out, stderr=err, env={**os.environ, **(env or {})},
                                   cwd=cwd)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}")
            time.sleep(0.05)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return Measured(wall, usage.ru_maxrss / 1024, stdout, stderr)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 7) -> float:
    """The fp32 matmul ceiling of this machine now: median GFLOP/s of a size³ product on `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(repeats):
        iterations = 10
        start = time.perf_counter()
        for _ in range(iterations):
            a @ b
        rates.append(2 * size**3 * iterations / (time.perf_counter() - start) / 1e9)
    torch.set_num_threads(previous)
    return median(rates)
