"""What every benchmark needs: subprocesses timed with their own peak memory, medians, the matmul ceiling."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
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
    peak_mb: float  # the command's own peak resident memory (its children that it waited for included)
    stdout: str
    stderr: str


# Linux starts a child's peak-memory count (ru_maxrss) from its parent's resident memory at the fork, and
# this process holds torch and more. So each command runs under this small launcher, which reports the peak
# of its own child: that child starts from the launcher's few MB, not from ours.
_LAUNCHER = """import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as peak:
    peak.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(command: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 timeout: float = 7200, stdin_path: Optional[Path] = None) -> Measured:
    """Run a command to completion: its wall time, and its peak memory from the kernel's accounting."""
    log_dir = RESULTS_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time_ns()}"
    out_path, err_path, peak_path = (log_dir / f"{stamp}.{kind}" for kind in ("out", "err", "peak"))
    launched = [sys.executable, "-c", _LAUNCHER, str(peak_path.resolve()), *command]
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err, open(stdin_path or os.devnull) as stdin:
        process = subprocess.Popen(launched, stdin=stdin, stdout=out, stderr=err, env={**os.environ, **(env or {})},
                                   cwd=cwd, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except BaseException as stopped:  # a timeout or Ctrl-C: the launcher and the command under it go too
            os.killpg(process.pid, signal.SIGKILL)
            if isinstance(stopped, subprocess.TimeoutExpired):
                raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
            raise
    wall = time.perf_counter() - started
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return Measured(wall, int(peak_path.read_text()) / 1024, stdout, stderr)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 7, dtype: torch.dtype = torch.float32) -> float:
    """The matmul ceiling of this machine now, in `dtype`: median GFLOP/s of a size³ product on `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
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
