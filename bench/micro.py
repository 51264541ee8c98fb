"""The building blocks this toolkit replaced, timed beside torch's own, at the shapes of the peers' model.

    python -m bench.micro [--repeats 7]

Each line is the median over `repeats` alternated rounds of: a dropout mask for a (64, 15, 256) batch
(`nn.Dropout` against `ByteDropout`), one Adam update of the peers' model's 7.7 M parameters (foreach against
fused), and the 5 best of 8,000 scores for 320 rows, as in beam 5 over 64 sentences (`torch.topk` against
`seq2seq.search.top_k`), plus the max-with-index of greedy search. Last, the output layer and
log-softmax at beam 5's shape (1,250 rows of 8,000 words, 40 MB), each round in two fresh processes: one
with glibc's default allocator settings, one after `seq2seq.allocator.keep_large_blocks()`.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
from torch import nn

from bench.common import PEER_MATCH
from seq2seq.allocator import keep_large_blocks
from seq2seq.config import load_config
from seq2seq.model import build_model
from seq2seq.model.dropout import ByteDropout
from seq2seq.search import top_k


def _time_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def _alternated(name: str, measure_theirs: Callable[[], float], measure_ours: Callable[[], float],
                repeats: int) -> dict:
    """Median µs of each measurement, alternated round by round so both see the same machine."""
    theirs, ours = [], []
    for _ in range(repeats):
        theirs.append(measure_theirs())
        ours.append(measure_ours())
    torch_us, ours_us = statistics.median(theirs), statistics.median(ours)
    return {"name": name, "torch_us": torch_us, "ours_us": ours_us, "speedup": torch_us / ours_us}


def _side_by_side(name: str, theirs: Callable[[], object], ours: Callable[[], object], repeats: int,
                  calls: int) -> dict:
    """Median µs per call of each, timed in this process."""
    return _alternated(name, lambda: _time_us(theirs, calls), lambda: _time_us(ours, calls), repeats)


def _adam_pair() -> tuple[Callable[[], object], Callable[[], object]]:
    """One step of foreach Adam and one of fused Adam, each over its own copy of the peers' model."""
    config = load_config(PEER_MATCH).model
    def optimizer(fused: bool) -> torch.optim.Optimizer:
        params = list(build_model(config, 8000, 7936).parameters())  # the peers' SentencePiece vocabularies
        for p in params:
            p.grad = torch.randn_like(p)
        return torch.optim.Adam(params, lr=1e-3, fused=fused)
    foreach, fused = optimizer(False), optimizer(True)
    return foreach.step, fused.step


def output_layer_us(keep_blocks: bool, calls: int = 20) -> float:
    """µs per output layer + log-softmax over beam 5's rows, in this process (call it in a fresh one)."""
    if keep_blocks and not keep_large_blocks():
        raise RuntimeError("glibc's allocator settings could not be changed here")
    torch.manual_seed(0)
    generator, rows = nn.Linear(256, 8000), torch.randn(1250, 256)
    with torch.inference_mode():
        return _time_us(lambda: torch.log_softmax(generator(rows), dim=-1), calls)


def _allocator_side_by_side(repeats: int) -> dict:
    """Median µs of the output layer in fresh processes, without and with large blocks kept."""
    def child(keep: bool) -> float:
        code = f"from bench.micro import output_layer_us; print(output_layer_us({keep}))"
        return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    return _alternated("output layer + log-softmax, (1250, 256) → 8000, glibc default against large blocks kept",
                       lambda: child(False), lambda: child(True), repeats)


def micro_benchmarks(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    activations = torch.randn(64, 15, 256)
    torch_dropout, byte_dropout = nn.Dropout(0.3).train(), ByteDropout(0.3).train()
    scores = torch.randn(320, 8000)
    adam_foreach, adam_fused = _adam_pair()
    return [
        _side_by_side("dropout p=0.3, (64, 15, 256)", lambda: torch_dropout(activations),
                      lambda: byte_dropout(activations), repeats, 50),
        _side_by_side("Adam step, 7.7 M parameters", adam_foreach, adam_fused, repeats, 5),
        _side_by_side("top 5 of (320, 8000)", lambda: scores.topk(5, dim=1), lambda: top_k(scores, 5), repeats, 50),
        _side_by_side("max with index of (64, 8000)", lambda: scores[:64].max(dim=1), lambda: top_k(scores[:64], 1),
                      repeats, 100),
        _allocator_side_by_side(repeats),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"| operation ({torch.get_num_threads()} threads) | torch µs | ours µs | speed-up |\n|---|---|---|---|")
    for row in micro_benchmarks(args.repeats):
        print(f"| {row['name']} | {row['torch_us']:,.0f} | {row['ours_us']:,.0f} | {row['speedup']:.1f}× |")


if __name__ == "__main__":
    main()
