"""The fused decoder kernels against the eager PyTorch path (issue 24), side by side in one process.

    python -m bench.fused --checkpoint runs/multi30k_de_en/checkpoints/best.pt [--rounds 5] [--threads 2]
    python -m bench.fused --checkpoint CKPT --compile   # torch.compile of the decoder's step instead, fp32

With the checkpoint's model and batch size, on the first 4,000 Multi30k training pairs (60 batches of them for
the training figures) and the first 500 test2016 sentences: the decoder's loop forward and backward alone
(encoder outputs detached), the output layer and the loss forward and backward alone (on the decoder's outputs,
computed beforehand), the trainer's whole step (forward, backward, clipping, Adam) in fp32 and in bf16
autocast, and greedy and beam-5 translation in fp32. Each round runs the fused path and then the eager one
(seq2seq.model.fused.disabled) on the same batches, so the two share the machine's state; a figure is the
median over rounds, and the ratio is fused / eager.

--compile measures the issue's other way: torch.compile (inductor, dynamic shapes) of the decoder's step function
alone (not the unrolled loop), against the eager step, both without the fused kernels, on the decoder's loop:
the compile time of the first batches, and the loop's forward and backward afterwards.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from typing import Callable, Optional

import torch

from bench.encoder import _step_seconds
from bench.workloads import training_parts, translating
from seq2seq.allocator import keep_large_blocks
from seq2seq.model import fused
from seq2seq.model.decoder import DecoderState


def _detached(state: DecoderState) -> DecoderState:
    """The decoder's start with the encoder cut off, so that a backward covers the decoder's loop alone."""
    leaf = lambda t: t.detach().requires_grad_()  # noqa: E731
    return DecoderState(h=[leaf(t) for t in state.h], c=None if state.c is None else [leaf(t) for t in state.c],
                        feed=state.feed, memory=leaf(state.memory), keys=leaf(state.keys), mask=state.mask)


def _loop_seconds(step, batches) -> float:
    decoder, total = step.model.decoder, 0.0
    for batch in batches:
        step.zero_grad()
        with step.autocast():
            state = _detached(step.model.encode(batch.src, batch.src_lengths))
            started = time.perf_counter()
            outputs = decoder.attentional_outputs(batch.tgt_in, state)
        outputs.float().square().mean().backward()
        total += time.perf_counter() - started
    return total


def _loss_seconds(step, batches) -> float:
    decoder, total = step.model.decoder, 0.0
    for batch in batches:
        step.zero_grad()
        with step.autocast():
            with torch.no_grad():
                outputs = decoder.attentional_outputs(batch.tgt_in, step.model.encode(batch.src, batch.src_lengths))
            outputs.requires_grad_()
            started = time.perf_counter()
            loss = step.loss(decoder.generator(outputs), batch)
        loss.backward()
        total += time.perf_counter() - started
    return total


def _side_by_side(measure: Callable[[], float], rounds: int) -> dict:
    """Seconds of `measure` fused and eager, alternating, after one warm-up of each; medians and their ratio."""
    seconds: dict[str, list[float]] = {"fused": [], "eager": []}
    for round_ in range(rounds + 1):
        for path in ("fused", "eager"):
            if path == "eager":
                with fused.disabled():
                    elapsed = measure()
            else:
                elapsed = measure()
            if round_ > 0:
                seconds[path].append(elapsed)
    fused_s, eager_s = statistics.median(seconds["fused"]), statistics.median(seconds["eager"])
    return {"fused_s": round(fused_s, 3), "eager_s": round(eager_s, 3), "speedup": round(eager_s / fused_s, 3)}


def training(checkpoint: str, dtype: Optional[torch.dtype], rounds: int) -> dict:
    step, batches = training_parts(checkpoint, 60, dtype)
    tokens = sum(batch.num_tgt_tokens for batch in batches)
    results = {"decoder loop forward+backward": _side_by_side(lambda: _loop_seconds(step, batches), rounds),
               "output layer and loss forward+backward": _side_by_side(lambda: _loss_seconds(step, batches), rounds),
               "training step": _side_by_side(lambda: _step_seconds(step, batches), rounds)}
    for path in ("fused", "eager"):
        results["training step"][f"{path}_tgt_tokens_per_s"] = round(tokens / results["training step"][f"{path}_s"])
    return results


def decoding(checkpoint: str, rounds: int) -> dict:
    results = {}
    for beam in (1, 5):
        translate, lines = translating(checkpoint, 500, beam)
        timed = _side_by_side(functools.partial(_timed, translate), rounds)
        timed.update({f"{path}_sentences_per_s": round(lines / timed[f"{path}_s"], 1) for path in ("fused", "eager")})
        results["greedy" if beam == 1 else f"beam {beam}"] = timed
    return results


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def compiled_step(checkpoint: str, rounds: int) -> dict:
    """The decoder loop with Decoder._step compiled by torch.compile against the eager step (see the docstring)."""
    step, batches = training_parts(checkpoint, 60, None)
    decoder = step.model.decoder
    with fused.disabled():
        eager = [_loop_seconds(step, batches) for _ in range(rounds + 1)][1:]
        started = time.perf_counter()
        decoder._step = torch.compile(decoder._step, dynamic=True)  # type: ignore[method-assign]
        _loop_seconds(step, batches[:2])
        compile_s = time.perf_counter() - started
        compiled = [_loop_seconds(step, batches) for _ in range(rounds + 1)][1:]
    eager_s, compiled_s = statistics.median(eager), statistics.median(compiled)
    return {"first_two_batches_with_compilation_s": round(compile_s, 1), "eager_loop_s": round(eager_s, 3),
            "compiled_loop_s": round(compiled_s, 3), "compiled_rounds_s": [round(x, 3) for x in compiled],
            "speedup": round(eager_s / compiled_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile of the step instead (see above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_large_blocks()
    if args.compile:
        print(json.dumps({"torch.compile of the decoder step, fp32": compiled_step(args.checkpoint, args.rounds)}))
        return
    if fused.library() is None:
        raise SystemExit("the fused kernels could not be built (see the message above): nothing to compare")
    print(json.dumps({"fp32 training": training(args.checkpoint, None, args.rounds)}), flush=True)
    print(json.dumps({"bf16 training": training(args.checkpoint, torch.bfloat16, args.rounds)}), flush=True)
    print(json.dumps({"fp32 decoding": decoding(args.checkpoint, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
