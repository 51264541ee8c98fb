"""Decoding speed: sentences/s and target tokens/s, greedy and beam 5, on Multi30k test2016 and IWSLT14 test.

    python -m bench.decoding --checkpoint runs/multi30k_de_en/checkpoints/best.pt [--precision int8|bf16]

Each setting runs in a fresh worker process (so its peak memory is its own): the model is loaded, one
warm-up batch decoded, then the whole set translated --repeats times; the median time counts. Also
measured: how time grows with sentence length (IWSLT14 split into length quartiles) and with batch size.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Optional

from bench.common import IWSLT14, MULTI30K, median, run_measured
from seq2seq.evaluate import score_corpus
from seq2seq.translate import DEFAULT_BATCH_TOKENS

TEST_SETS = {
    "test2016": (MULTI30K / "test_2016_flickr.de.gz", MULTI30K / "test_2016_flickr.en.gz"),
    "iwslt14": (IWSLT14 / "test.de.gz", IWSLT14 / "test.en.gz"),
}


def decode_in_worker(checkpoint: str, test_set: str, beam: int, *, lines: int, repeats: int, threads: int,
                     precision: Optional[str] = None, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                     length_quartile: Optional[int] = None) -> dict:
    """One decoding setting measured in a fresh process: its result dict (see `worker`)."""
    command = [sys.executable, "-m", "bench.decoding", "--worker", "--checkpoint", checkpoint, "--test-set", test_set,
               "--beam", str(beam), "--lines", str(lines), "--repeats", str(repeats), "--threads", str(threads),
               "--batch-tokens", str(batch_tokens)]
    if precision:
        command += ["--precision", precision]
    if length_quartile is not None:
        command += ["--length-quartile", str(length_quartile)]
    return json.loads(run_measured(command).stdout.strip().splitlines()[-1])


def worker(args: argparse.Namespace) -> dict:
    import torch

    from seq2seq.corpus import read_lines
    from seq2seq.translate import Translator

    torch.set_num_threads(args.threads)
    src_path, ref_path = TEST_SETS[args.test_set]
    sources, references = read_lines(src_path)[:args.lines], read_lines(ref_path)[:args.lines]
    translator = Translator(args.checkpoint, device="cpu", batch_tokens=args.batch_tokens, precision=args.precision)
    if args.length_quartile is not None:
        sources, references = _quartile(translator, sources, references, args.length_quartile)
    options = translator.options(beam_size=args.beam, length_penalty=1.0)
    translator.translate(sources[:32], options)  # warm-up: first-call allocations and kernel selection
    times, outputs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        outputs = translator.translate(sources, options)
        times.append(time.perf_counter() - start)
    seconds = median(times)
    target_tokens = sum(len(t.target_pieces) + 1 for t in outputs)  # + end of sentence
    source_tokens = sum(len(t.source_pieces) + 1 for t in outputs)
    return {"test_set": args.test_set, "beam": args.beam, "precision": args.precision, "sentences": len(sources),
            "batch_tokens": args.batch_tokens, "seconds": round(seconds, 3),
            "sentences_per_s": round(len(sources) / seconds, 1), "tgt_tokens_per_s": round(target_tokens / seconds),
            "mean_source_pieces": round(source_tokens / len(sources), 1),
            "ms_per_sentence": round(1000 * seconds / len(sources), 2),
            "bleu": round(score_corpus([t.text for t in outputs], references, ["bleu"])["bleu"]["score"], 2),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _quartile(translator, sources: list[str], references: list[str], quartile: int):
    """The sentences whose source length (in pieces) falls in the given quarter of the length order."""
    lengths = [len(translator.loaded.src_tokenizer.encode(s)) for s in sources]
    order = sorted(range(len(sources)), key=lambda i: lengths[i])
    quarter = len(order) // 4
    chosen = sorted(order[quartile * quarter:(quartile + 1) * quarter])
    return [sources[i] for i in chosen], [references[i] for i in chosen]


def decoding_benchmark(checkpoint: str, *, lines: int, repeats: int, threads: int) -> dict:
    """Greedy and beam 5 on each test set, int8 and bf16 beside fp32 on test2016, and the length and batch scaling."""
    measure = lambda test_set, beam, **kw: decode_in_worker(checkpoint, test_set, beam, threads=threads, **kw)  # noqa: E731
    runs = [measure(s, beam, lines=lines, repeats=repeats) for s in TEST_SETS for beam in (1, 5)]
    runs += [measure("test2016", beam, lines=lines, repeats=repeats, precision=kind)
             for kind in ("int8", "bf16") for beam in (1, 5)]
    return {"runs": runs,
            "by_length": [measure("iwslt14", beam, lines=4 * lines, repeats=1, length_quartile=q)
                          for beam in (1, 5) for q in range(4)],
            "by_batch": [measure("test2016", 5, lines=lines, repeats=1, batch_tokens=5 * source_tokens)
                         for source_tokens in (15, 250, 1000, 4000, 16000)]}


def find(runs: list[dict], **match) -> dict:
    return next(r for r in runs if all(r.get(k) == v for k, v in match.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--test-set", choices=list(TEST_SETS), default="test2016")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--precision", choices=["int8", "bf16"], help="default fp32")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS, help="source tokens × beam size")
    parser.add_argument("--length-quartile", type=int, choices=range(4))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    json.dump(decoding_benchmark(args.checkpoint, lines=args.lines, repeats=args.repeats, threads=args.threads),
              sys.stdout, indent=1)


if __name__ == "__main__":
    main()
