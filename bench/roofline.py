"""How fast could training and decoding be if only their matrix products cost time? A roofline at real shapes.

    python -m bench.roofline --checkpoint bench/results/train_peer_match/checkpoints/last.pt [--batches 8]

Records every matrix product (mm, addmm, bmm) that real training steps and real decoding run, with the
shapes and strides they ran at, then times each distinct product alone, over and over, so its operands
sit in cache. The sum is what the products need at their own best speed: a lower bound on the time of
any toolkit that does this arithmetic on these cores, however little the rest of its work costs. The
measured time against that bound says what the rest (recurrent-cell arithmetic, softmax, copies,
dispatch) costs, and the products' own rate says how far these shapes are from the 1024³ ceiling.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.common import matmul_peak_gflops
from bench.workloads import training_steps, translating
from seq2seq.allocator import keep_large_blocks

PRODUCTS = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm", torch.ops.aten.bmm.default: "bmm"}
OPS: dict[str, Callable[..., torch.Tensor]] = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm}
Signature = tuple  # (op name, ((shape, stride), ...) of its tensor operands)


class RecordProducts(TorchDispatchMode):
    """Counts each matrix product by its operands' shapes and strides, forward and backward alike.

    Under inference mode, composite operators (`linear`, the encoder's `lstm`) reach the dispatcher whole;
    they are taken apart here, as torch's FLOP counter does, so their products are counted too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[Signature] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            operands = tuple((tuple(a.shape), tuple(a.stride())) for a in args if isinstance(a, torch.Tensor))
            self.calls[(PRODUCTS[func], operands)] += 1
        elif func is not torch.ops.prim.device.default:
            with self:
                decomposed = func.decompose(*args, **(kwargs or {}))
            if decomposed is not NotImplemented:
                return decomposed
        return func(*args, **(kwargs or {}))


def product_flops(signature: Signature) -> int:
    name, operands = signature
    left, right = (shape for shape, _ in operands[-2:])  # addmm's first operand is the bias
    batch = left[0] if name == "bmm" else 1
    return 2 * batch * left[-2] * left[-1] * right[-1]


def time_alone(signatures: list[Signature], seconds_per_timing: float = 0.005, passes: int = 7) -> dict:
    """Seconds per call of each product on random operands of the same layout, the best of `passes` timings.

    The passes go round all the products in turn, so a spell of load from elsewhere on the machine does not
    fall on every timing of the same product.
    """
    prepared = {s: _operands_and_calls(s, seconds_per_timing) for s in signatures}
    best = {s: float("inf") for s in signatures}
    for _ in range(passes):
        for s, (tensors, calls) in prepared.items():
            op = OPS[s[0]]
            start = time.perf_counter()
            for _ in range(calls):
                op(*tensors)
            best[s] = min(best[s], (time.perf_counter() - start) / calls)
    return best


def _operands_and_calls(signature: Signature, seconds: float) -> tuple[list[torch.Tensor], int]:
    """Random operands of the signature's layout, and how many calls take about `seconds`."""
    name, operands = signature
    tensors = [torch.empty_strided(shape, stride).normal_() for shape, stride in operands]
    op = OPS[name]
    op(*tensors)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        op(*tensors)
        calls += 1
    return tensors, calls


def roofline(work: Callable[[], object], units: float, label: str, repeats: int = 5) -> dict:
    """Time `work` as it runs, record its products, time them alone; rates are per `units`.

    Both times are the best of several: on a shared machine, other load only ever adds time.
    """
    work()  # warm-up
    measured = min(_timed(work) for _ in range(repeats))
    with RecordProducts() as recorder:
        work()
    per_signature = time_alone(list(recorder.calls))
    products_s = sum(count * per_signature[s] for s, count in recorder.calls.items())
    flops = sum(count * product_flops(s) for s, count in recorder.calls.items())
    heaviest = sorted(recorder.calls, key=lambda s: -recorder.calls[s] * per_signature[s])[:6]
    return {
        "work": label, "measured_s": measured, "products_alone_s": products_s,
        "headroom": measured / products_s, "measured_rate": units / measured,
        "products_only_rate": units / products_s, "product_calls": sum(recorder.calls.values()),
        "products_gflops_alone": flops / products_s / 1e9, "achieved_gflops": flops / measured / 1e9,
        "heaviest": [{"op": s[0], "shapes": [shape for shape, _ in s[1]], "calls": recorder.calls[s],
                      "share_of_products": recorder.calls[s] * per_signature[s] / products_s,
                      "gflops": product_flops(s) / per_signature[s] / 1e9} for s in heaviest],
    }


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def markdown(results: list[dict], ceiling: float) -> str:
    lines = [f"matmul ceiling (1024³, now): {ceiling:.1f} GFLOP/s", "",
             "| work | measured | products alone | headroom | rate measured → products only "
             "| products' GFLOP/s alone | achieved GFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['work']} | {r['measured_s']:.3f} s | {r['products_alone_s']:.3f} s | "
                     f"{r['headroom']:.2f} | {r['measured_rate']:,.0f} → {r['products_only_rate']:,.0f} | "
                     f"{r['products_gflops_alone']:.1f} | {r['achieved_gflops']:.1f} |")
    for r in results:
        lines += ["", f"Heaviest products, {r['work']} ({r['product_calls']:,} calls in all):", "",
                  "| op | shapes | calls | share of product time | GFLOP/s alone |", "|---|---|---|---|---|"]
        lines += [f"| {h['op']} | {' · '.join('×'.join(map(str, s)) for s in h['shapes'])} | {h['calls']} | "
                  f"{100 * h['share_of_products']:.1f}% | {h['gflops']:.1f} |" for h in r["heaviest"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--batches", type=int, default=8, help="training batches per timing")
    parser.add_argument("--lines", type=int, default=500, help="test2016 sentences per decoding timing")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_large_blocks()  # as the trainer and the translator do
    ceiling = matmul_peak_gflops(args.threads)
    training, tokens = training_steps(args.checkpoint, args.batches)
    results = [roofline(training, tokens, "training, target tok/s")]
    for beam in (1, 5):
        decoding, sentences = translating(args.checkpoint, args.lines, beam)
        results.append(roofline(decoding, sentences, f"beam {beam}, sent/s"))
    print(markdown(results, ceiling))
    if args.json:
        print(json.dumps({"matmul_ceiling_gflops": ceiling, "results": results}))


if __name__ == "__main__":
    main()
