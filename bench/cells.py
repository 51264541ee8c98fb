"""Training speed by recurrent cell (issue 24): LSTM, GRU, SRU and QRNN at one model size, side by side.

    python -m bench.cells --checkpoint runs/multi30k_de_en/checkpoints/best.pt [--rounds 3] [--threads 2]

Each cell is a fresh model with the checkpoint's sizes, tokenizers and train section (the cell is the only
change), on the same 60 Multi30k training batches at the checkpoint's batch size. Per cell, in fp32 and in bf16
autocast: the encoder's forward and backward, the decoder's loop forward and backward (encoder cut off), and
the trainer's whole step as target tokens/s. Every round measures every cell in turn; figures are medians over
rounds. BLEU at equal training time is a training run per cell (BENCHMARKS.md gives the commands).
"""
from __future__ import annotations

import argparse
import json
import statistics
from typing import Optional

import torch

from bench.encoder import _encoder_seconds, _step_seconds
from bench.fused import _loop_seconds
from bench.workloads import training_parts
from seq2seq.allocator import keep_large_blocks

CELLS = ("lstm", "gru", "sru", "qrnn")


def compare(checkpoint: str, cells: list[str], dtype: Optional[torch.dtype], rounds: int) -> dict:
    parts = {cell: training_parts(checkpoint, 60, dtype, rnn=cell) for cell in cells}
    seconds: dict[str, dict[str, list[float]]] = {cell: {"encoder": [], "loop": [], "step": []} for cell in cells}
    for round_ in range(rounds + 1):  # round 0 warms up: Adam's state, the allocator, oneDNN's primitives
        for cell, (step, batches) in parts.items():
            forward_s, backward_s = _encoder_seconds(step, batches, force_pack=False)
            measured = {"encoder": forward_s + backward_s, "loop": _loop_seconds(step, batches),
                        "step": _step_seconds(step, batches)}
            for name, value in measured.items():
                if round_ > 0:
                    seconds[cell][name].append(value)
    results = {}
    for cell, (_, batches) in parts.items():
        tokens = sum(batch.num_tgt_tokens for batch in batches)
        median = {name: statistics.median(values) for name, values in seconds[cell].items()}
        results[cell] = {"encoder_forward_backward_s": round(median["encoder"], 3),
                         "decoder_loop_forward_backward_s": round(median["loop"], 3),
                         "step_tgt_tokens_per_s": round(tokens / median["step"])}
    baseline = results[cells[0]]["step_tgt_tokens_per_s"]
    for cell in cells:
        results[cell][f"step_speed_vs_{cells[0]}"] = round(results[cell]["step_tgt_tokens_per_s"] / baseline, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_large_blocks()
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else None
        print(json.dumps({precision: compare(args.checkpoint, args.cells, dtype, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
