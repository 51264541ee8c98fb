"""fp32 against reduced-precision decoding in one process, alternated round by round.

    python -m bench.precision --checkpoint runs/quickstart/checkpoints/best.pt [--kinds bf16 int8] [--rounds 3]

The suite measures each setting in its own process, one after another, and on a shared machine the speed
drifts between them by tens of percent. Here one translator per kind decodes the same sentences in turn,
every round, so drift hits all alike; each rate is the median round. Also reported: BLEU, and how many
outputs are the same text as fp32's.
"""
from __future__ import annotations

import argparse
import json
import time

from bench.common import median
from bench.decoding import TEST_SETS
from seq2seq.config import ReducedPrecision
from seq2seq.corpus import read_lines
from seq2seq.evaluate import score_corpus
from seq2seq.translate import Translator


def compare(checkpoint: str, kinds: list[ReducedPrecision], lines: int, rounds: int) -> list[dict]:
    """One row per precision (fp32 first) and beam: sentences/s (median round), BLEU, agreement with fp32."""
    src_path, ref_path = TEST_SETS["test2016"]
    sources, references = read_lines(src_path)[:lines], read_lines(ref_path)[:lines]
    translators = {"fp32": Translator(checkpoint, device="cpu")}
    translators.update({kind: Translator(checkpoint, device="cpu", precision=kind) for kind in kinds})
    rows = []
    for beam in (1, 5):
        seconds: dict[str, list[float]] = {kind: [] for kind in translators}
        texts: dict[str, list[str]] = {}
        for _ in range(rounds):
            for kind, translator in translators.items():
                options = translator.options(beam_size=beam, length_penalty=1.0)
                start = time.perf_counter()
                texts[kind] = [t.text for t in translator.translate(sources, options)]
                seconds[kind].append(time.perf_counter() - start)
        for kind in translators:
            rows.append({"kind": kind, "beam": beam, "sentences_per_s": round(lines / median(seconds[kind]), 1),
                         "rounds": [round(lines / s, 1) for s in seconds[kind]],
                         "bleu": round(score_corpus(texts[kind], references, ["bleu"])["bleu"]["score"], 2),
                         "same_as_fp32": sum(a == b for a, b in zip(texts[kind], texts["fp32"]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--kinds", nargs="+", choices=["int8", "bf16"], default=["bf16", "int8"])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for row in compare(args.checkpoint, args.kinds, args.lines, args.rounds):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
