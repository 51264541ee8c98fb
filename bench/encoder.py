"""The encoder packed or unpacked (issue 24): its forward and backward, and whole training steps, per batching.

    python -m bench.encoder --checkpoint runs/multi30k_de_en/checkpoints/best.pt [--rounds 5] [--threads 2]

A packed batch runs PyTorch's own recurrence step by step; a batch whose sources share one length runs unpacked,
which PyTorch hands to oneDNN's fused RNN on a CPU. Three ways, on the same first 4,000 Multi30k training
pairs with the checkpoint's model and batch size, in fp32 and in bf16 autocast:
  mixed, packed        batches cut by padded width, as by default (train.equal_source_lengths: false): packed,
                       since their source lengths differ
  equal, packed        batches of one source length each, packed anyway (what the batching alone changes)
  equal, unpacked      the same batches on the fused path (train.equal_source_lengths: true)
Each figure is the median over rounds of the sum over all batches (the same pairs in every row, so the rows
compare although their batch counts differ): the encoder's forward, its backward (from a gradient on its
outputs and final state), and for the two ways training takes, the trainer's whole step (forward, backward,
clipping, Adam) as target tokens/s. On 4,000 pairs the equal-length cut adds more batches (58% at 1,500 tokens)
than on the whole corpus (12%), so the step figure overstates what it costs a real run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Optional

import torch

from bench.workloads import training_parts
from seq2seq.allocator import keep_large_blocks

# (train.equal_source_lengths, the encoder's `force_pack`): without it the encoder chooses, as in training
WAYS = {"mixed, packed": (False, False), "equal, packed": (True, True), "equal, unpacked": (True, False)}


def _encoder_seconds(step, batches, force_pack: bool) -> tuple[float, float]:
    """Seconds of the encoder's forward and backward over `batches`, under the step's autocast."""
    encoder, forward_s, backward_s = step.model.encoder, 0.0, 0.0
    for batch in batches:
        step.zero_grad()
        started = time.perf_counter()
        with step.autocast():
            memory, final = encoder(batch.src, batch.src_lengths, force_pack=force_pack)
        states = final if isinstance(final, tuple) else (final,)
        loss = memory.float().square().sum() + sum(s.float().sum() for s in states)
        middle = time.perf_counter()
        loss.backward()
        forward_s, backward_s = forward_s + middle - started, backward_s + time.perf_counter() - middle
    return forward_s, backward_s


def _step_seconds(step, batches) -> float:
    """Seconds of the trainer's whole step over `batches`."""
    started = time.perf_counter()
    for batch in batches:
        step([batch], batch.num_tgt_tokens)
    return time.perf_counter() - started


def compare(checkpoint: str, dtype: Optional[torch.dtype], rounds: int) -> dict:
    results = {}
    for way, (equal_source, force_pack) in WAYS.items():
        step, batches = training_parts(checkpoint, 10**9, dtype, equal_source)
        tokens = sum(batch.num_tgt_tokens for batch in batches)
        _encoder_seconds(step, batches[:20], force_pack)  # warm-up: oneDNN's primitives, the allocator's blocks
        encoder = [_encoder_seconds(step, batches, force_pack) for _ in range(rounds)]
        results[way] = {"batches": len(batches),
                        "encoder_forward_s": round(statistics.median(f for f, _ in encoder), 3),
                        "encoder_backward_s": round(statistics.median(b for _, b in encoder), 3)}
        if not force_pack:  # a way training takes
            steps = [_step_seconds(step, batches) for _ in range(rounds)]
            results[way]["step_tgt_tokens_per_s"] = round(tokens / statistics.median(steps))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_large_blocks()
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else None
        print(json.dumps({precision: compare(args.checkpoint, dtype, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
