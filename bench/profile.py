"""Where the time goes: torch.profiler over training steps and over beam-5 decoding, grouped by kind of work.

    python -m bench.profile --checkpoint runs/multi30k_de_en/checkpoints/best.pt [--steps 30]

Uses the checkpoint's model and tokenizers on Multi30k training pairs (training) and test2016 (decoding),
and prints, for each, the share of CPU time per group (matrix products, recurrent-cell arithmetic,
softmax and loss, optimizer, indexing and copies, the rest) and the heaviest operators.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

from torch.profiler import ProfilerActivity, profile

from bench.workloads import training_steps, translating
from seq2seq.allocator import keep_large_blocks

GROUPS = [  # first match wins
    ("matrix products", ("addmm", "aten::mm", "bmm", "matmul", "linear", "baddbmm", "aten::lstm", "_thnn_fused")),
    ("optimizer", ("adam", "_foreach", "clip_grad")),
    ("softmax and loss", ("softmax", "cross_entropy", "nll_loss", "log_softmax", "topk", "sort")),
    ("indexing and copies", ("index", "select", "gather", "scatter", "copy_", "cat", "stack", "embedding", "pad",
                             "clone", "contiguous", "split", "chunk", "unbind", "view", "reshape", "transpose",
                             "slice", "narrow")),
    ("element-wise (gates, tanh, masks)", ("sigmoid", "tanh", "mul", "add", "sub", "div", "where", "masked", "fill",
                                           "dropout", "zero", "exp", "neg", "eq", "ne", "lt", "gt", "sum", "max",
                                           "min", "bernoulli")),
]


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, needles in GROUPS:
        if any(n in lowered for n in needles):
            return group
    return "other (Python, allocation, autograd bookkeeping)"


def summarise(prof, top: int = 12) -> str:
    """Self-CPU time per group (which adds up to the total) and the heaviest operators."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    by_group: dict[str, float] = defaultdict(float)
    for e in events:
        by_group[group_of(e.key)] += e.self_cpu_time_total
    lines = ["| group | share of CPU time |", "|---|---|"]
    lines += [f"| {g} | {100 * t / total:.1f}% |" for g, t in sorted(by_group.items(), key=lambda kv: -kv[1])]
    lines += ["", "| operator | calls | share |", "|---|---|---|"]
    lines += [f"| {e.key} | {e.count} | {100 * e.self_cpu_time_total / total:.1f}% |"
              for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]]
    return "\n".join(lines)


def profile_training(checkpoint: str, steps: int) -> str:
    run, _ = training_steps(checkpoint, steps)
    run()  # warm-up outside the profile: Adam's state, the allocator's blocks
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return summarise(prof)


def profile_decoding(checkpoint: str, lines: int, beam: int) -> str:
    run, _ = translating(checkpoint, lines, beam)
    run()  # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return summarise(prof)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lines", type=int, default=300)
    args = parser.parse_args()
    keep_large_blocks()  # as the trainer and the translator do
    print(f"## Training, {args.steps} steps\n\n{profile_training(args.checkpoint, args.steps)}\n")
    for beam in (1, 5):
        table = profile_decoding(args.checkpoint, args.lines, beam)
        print(f"## Decoding, beam {beam}, {args.lines} test2016 sentences\n\n{table}\n")


if __name__ == "__main__":
    main()
