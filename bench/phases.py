"""Where a training step's time goes, phase by phase, timed with the wall clock.

    python -m bench.phases --checkpoint runs/quickstart/checkpoints/best.pt [--precision fp32 bf16] [--rounds 3]

torch.profiler adds its own cost to each of a step's thousands of small operations, and its per-operator
shares do not say how long each part of a step takes. Here each phase of real training steps is timed as it
runs, with the checkpoint's model, tokenizers and batch size on Multi30k training batches, through the trainer's
own step (seq2seq.step.TrainingStep, built from the checkpoint's train section): forward under autocast where
`train.amp` would use it, the loss in fp32 with the config's label smoothing, and the step's update (clipping
to train.clip_norm and the configured fused Adam), once per batch as at train.accumulate=1. The forward pass is
the model's own in its three pieces (encode, the decoder's loop, the output layer), called one by one to time
each. The backward pass is split where the gradient reaches the decoder's attentional outputs (a tensor hook):
before it, the output layer and the loss; after it, the recurrent loop, attention and the encoder.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Optional

import torch

from bench.workloads import training_parts
from seq2seq.allocator import keep_large_blocks
from seq2seq.precision import mixed_precision_dtype

PHASES = ("encoder forward", "decoder loop forward", "output layer and loss forward",
          "output layer and loss backward", "loop and encoder backward", "clipping and Adam")


def time_phases(checkpoint: str, batches: int, rounds: int, dtype: Optional[torch.dtype]) -> dict:
    """Milliseconds per batch in each phase (summed over `rounds` passes after two warm-up passes), and tok/s."""
    step, chosen = training_parts(checkpoint, batches, dtype)
    model, decoder = step.model, step.model.decoder
    divisors = [batch.num_tgt_tokens for batch in chosen]  # counted once, outside the timed phases
    totals: dict[str, float] = defaultdict(float)

    def one_batch(batch, divisor: int) -> dict[str, float]:
        marks = [time.perf_counter()]
        step.zero_grad()
        with step.autocast():  # what step.forward_loss runs, in the pieces Seq2Seq.forward chains
            state = model.encode(batch.src, batch.src_lengths)
            marks.append(time.perf_counter())
            outputs = decoder.attentional_outputs(batch.tgt_in, state, step.config.scheduled_sampling)
            marks.append(time.perf_counter())
            loss = step.loss(decoder.generator(outputs), batch)
        marks.append(time.perf_counter())
        reached_loop: list[float] = []
        outputs.register_hook(lambda grad: reached_loop.append(time.perf_counter()))
        step.backward(loss, divisor)
        marks += [reached_loop[0], time.perf_counter()]
        step.update()
        marks.append(time.perf_counter())
        return {phase: later - earlier for phase, earlier, later in zip(PHASES, marks, marks[1:])}

    for _ in range(2):  # warm-up: Adam's state, the allocator's blocks, oneDNN's kernels
        for batch, divisor in zip(chosen, divisors):
            one_batch(batch, divisor)
    for _ in range(rounds):
        for batch, divisor in zip(chosen, divisors):
            for phase, seconds in one_batch(batch, divisor).items():
                totals[phase] += seconds
    step_seconds = sum(totals.values())
    tokens = rounds * sum(batch.num_tgt_tokens for batch in chosen)
    return {"tgt_tokens_per_s": round(tokens / step_seconds),
            "ms_per_batch": {p: round(1000 * totals[p] / (rounds * len(chosen)), 1) for p in PHASES},
            "share": {p: round(totals[p] / step_seconds, 3) for p in PHASES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_large_blocks()  # as the trainer does
    for precision in args.precision:
        dtype = mixed_precision_dtype(True, torch.device("cpu")) if precision == "bf16" else None
        if precision == "bf16" and dtype is None:
            print(json.dumps({"precision": "bf16", "skipped": "this CPU does not multiply bf16 natively"}))
            continue
        print(json.dumps({"precision": precision, **time_phases(args.checkpoint, args.batches, args.rounds, dtype)}))


if __name__ == "__main__":
    main()
