"""Training speed: target and source+target tokens/s, peak memory, and achieved FLOP/s against the matmul ceiling.

    python -m bench.training [--config configs/multi30k_de_en.yaml] [--steps 300]

Trains with the real CLI for a fixed number of steps in a fresh process; the speed is the median of the
trainer's own windows (validation excluded), the memory that process's peak. FLOPs per target token are
counted by torch's FLOP counter on one forward and backward pass of the same model at Multi30k's lengths.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from itertools import islice
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import RESULTS_DIR, matmul_peak_gflops, median, run_measured
from seq2seq.checkpoint import load_model
from seq2seq.config import load_config
from seq2seq.corpus import iter_pairs
from seq2seq.model import build_model
from seq2seq.precision import mixed_precision_dtype
from seq2seq.train import token_loss_sum


def flops_per_target_token(config_path: str, batch: int = 64, src_len: int = 15, tgt_len: int = 15) -> float:
    """Matmul FLOPs of one training step (forward + backward) per target token; padding not counted."""
    config = load_config(config_path)
    vocab = config.tokenizer.vocab_size
    model = build_model(config.model, vocab, vocab)
    src = torch.randint(4, vocab, (batch, src_len))
    tgt = torch.randint(4, vocab, (batch, tgt_len + 1))
    with FlopCounterMode(display=False) as counter:
        logits = model(src, torch.full((batch,), src_len), tgt[:, :-1])
        token_loss_sum(logits, tgt[:, 1:]).backward()
    return counter.get_total_flops() / (batch * tgt_len)


def source_to_target_ratio(checkpoint: Path, corpus: str, src: str, tgt: str, lines: int = 5000) -> float:
    """Source pieces per target piece over the first `lines` pairs of a training corpus (a prefix or a TSV file,
    as data.train names them), with the run's own tokenizers."""
    loaded = load_model(checkpoint, "cpu")
    pairs = list(islice(iter_pairs(corpus, src, tgt), lines))
    src_pieces = sum(len(loaded.src_tokenizer.encode(s)) + 1 for s, _ in pairs)
    tgt_pieces = sum(len(loaded.tgt_tokenizer.encode(t)) + 1 for _, t in pairs)
    return src_pieces / tgt_pieces


def train_for(config_path: str, run_dir: Path, steps: int, windows: int = 3, minutes: float | None = None,
              extra: Sequence[str] = ()) -> dict:
    """Train in a fresh process; returns tokens/s (median of windows), peak memory, wall time and BLEU."""
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resumed one
    valid_every = max(1, steps // windows)
    overrides = [f"train.max_steps={steps}", f"train.valid_every={valid_every}", "train.early_stopping.patience=1000",
                 f"train.max_minutes={minutes if minutes else 1000}", *extra]
    command = [sys.executable, "-m", "seq2seq", "train", config_path, "--run-dir", str(run_dir)]
    for override in overrides:
        command += ["--set", override]
    measured = run_measured(command)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "steps": records[-1]["step"], "wall_s": round(measured.wall_s, 1), "peak_mb": round(measured.peak_mb),
        "tgt_tokens_per_s": median([r["tokens_per_sec"] for r in records]),
        "valid_bleu_greedy": round(records[-1]["bleu"], 2),
        "checkpoint": str(run_dir / "checkpoints/best.pt"), "last_checkpoint": str(run_dir / "checkpoints/last.pt"),
    }


def training_benchmark(config_path: str, steps: int, threads: int, tag: str = "default") -> dict:
    """Tokens/s, memory and the fraction of the matmul ceiling reached, with the ceiling measured just before.

    The ceiling is the one of the precision the products run in: bf16 where training uses mixed precision
    (`train.amp` on a CPU that multiplies bf16 natively), else fp32; the fp32 one is reported beside it.
    """
    config = load_config(config_path)
    bf16 = mixed_precision_dtype(config.train.amp, torch.device("cpu")) == torch.bfloat16
    fp32_peak = matmul_peak_gflops(threads)
    peak_gflops = matmul_peak_gflops(threads, dtype=torch.bfloat16) if bf16 else fp32_peak
    run_dir = RESULTS_DIR / f"train_{tag}"
    result = train_for(config_path, run_dir, steps, extra=["data.max_valid_pairs=300"])
    # data.train may name several corpora: the first one's ratio stands for them
    ratio = source_to_target_ratio(Path(result["last_checkpoint"]), config.data.train_corpora[0].path,
                                   config.data.src_lang, config.data.tgt_lang)
    flops = flops_per_target_token(config_path)
    achieved = result["tgt_tokens_per_s"] * flops / 1e9
    return {**result, "config": config_path, "src_tgt_tokens_per_s": round(result["tgt_tokens_per_s"] * (1 + ratio), 1),
            "gflops_per_tgt_token": round(flops / 1e9, 4), "achieved_gflops": round(achieved, 1),
            "products_dtype": "bf16" if bf16 else "fp32", "matmul_peak_gflops": round(peak_gflops, 1),
            "fraction_of_peak": round(achieved / peak_gflops, 3), "fp32_matmul_peak_gflops": round(fp32_peak, 1),
            "fraction_of_fp32_peak": round(achieved / fp32_peak, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    print(json.dumps(training_benchmark(args.config, args.steps, args.threads)))


if __name__ == "__main__":
    main()
