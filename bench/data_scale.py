"""Corpora of millions of pairs: preparation time, time to the first training step, and peak training memory,
on synthetic corpora built from Multi30k (each pair two Multi30k pairs joined: about 26 words a side).

    python -m bench.data_scale [--sizes 100000 1000000 5000000] [--baseline DIR --rounds 3]

For each size: `seq2seq prepare` (wall time, per million pairs), then `seq2seq train` on the prepared data
with the tiny model for a few steps: the seconds from launching it to its first step (it logs "first step
done"), and its peak resident memory. With --baseline DIR (a checkout of an older commit) it also alternates
quick-start training runs on Multi30k there and here and reports both tokens/s (median of --rounds each).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import MULTI30K
from seq2seq.corpus import read_parallel

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "results" / "data_scale"


def synthetic_corpus(pairs: int, folder: Path) -> str:
    """PREFIX.de / PREFIX.en of `pairs` pairs, each two random Multi30k training pairs joined (seeded)."""
    prefix = folder / f"synthetic_{pairs}"
    if Path(f"{prefix}.en").is_file():
        return str(prefix)
    src, tgt = read_parallel(str(MULTI30K / "train"), "de", "en")
    chooser = random.Random(pairs)
    folder.mkdir(parents=True, exist_ok=True)
    with open(f"{prefix}.de.part", "w", encoding="utf-8") as de, open(f"{prefix}.en.part", "w", encoding="utf-8") as en:
        for _ in range(pairs):
            i, j = chooser.randrange(len(src)), chooser.randrange(len(src))
            de.write(f"{src[i]} {src[j]}\n")
            en.write(f"{tgt[i]} {tgt[j]}\n")
    os.replace(f"{prefix}.de.part", f"{prefix}.de")
    os.replace(f"{prefix}.en.part", f"{prefix}.en")
    return str(prefix)


def _sets(prefix: str, run_dir: Path) -> list[str]:
    overrides = [f"data.train={prefix}", f"data.valid={MULTI30K}/val", "data.max_pairs=null",
                 "data.max_valid_pairs=100",
                 f"data.prepared_dir={WORK / 'prepared'}", "data.max_length=100", "train.max_steps=20",
                 "train.valid_every=1000", "train.max_minutes=null", "train.amp=false", "train.threads=2"]
    return [x for o in overrides for x in ("--set", o)] + ["--run-dir", str(run_dir)]


def measured(command: list[str], cwd: Path = REPO) -> dict:
    """Run `command` in a child of a fresh Python, so that its peak memory (ru_maxrss of that one child) is its
    own; returns wall seconds, peak MB and the seconds until it logged 'first step done' (if it did)."""
    probe = ("import resource, subprocess, sys, time, json\n"
             "start = time.time(); first = None\n"
             "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)\n"
             "for line in p.stdout:\n"
             "    if first is None and 'first step done' in line: first = time.time() - start\n"
             "rc = p.wait()\n"
             "print(json.dumps({'rc': rc, 'seconds': time.time() - start, 'first_step_s': first,\n"
             "                  'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", probe, *command], cwd=cwd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed with status {result['rc']}")
    return result


def one_size(pairs: int) -> dict:
    prefix = synthetic_corpus(pairs, WORK / "corpora")
    run_dir = WORK / "runs" / str(pairs)
    seq2seq = [sys.executable, "-m", "seq2seq"]
    prepare = measured([*seq2seq, "prepare", "configs/tiny.yaml", *_sets(prefix, run_dir)[:-2]])
    starts = []
    for _ in range(2):  # the second start finds the page cache as a resumed run would
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        starts.append(measured([*seq2seq, "train", "configs/tiny.yaml", *_sets(prefix, run_dir)]))
    return {"pairs": pairs, "prepare_s": round(prepare["seconds"], 1),
            "prepare_s_per_million": round(prepare["seconds"] / pairs * 1e6, 1),
            "prepare_peak_mb": round(prepare["peak_mb"]),
            "first_step_s": [round(s["first_step_s"], 1) for s in starts],
            "train_peak_mb": [round(s["peak_mb"]) for s in starts]}


def tokens_per_second(checkout: Path, run_dir: Path) -> float:
    """Quick-start training on Multi30k for 120 steps in `checkout`; the trainer's own tokens/s."""
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    sets = [f"data.train={MULTI30K}/train", f"data.valid={MULTI30K}/val", "data.max_valid_pairs=100",
            "train.max_steps=120", "train.valid_every=120", "train.max_minutes=null"]
    if (checkout / "seq2seq" / "prepare.py").is_file():
        sets.append(f"data.prepared_dir={WORK / 'prepared'}")
    command = [sys.executable, "-m", "seq2seq", "train", "configs/quickstart.yaml", "--run-dir", str(run_dir),
               *[x for o in sets for x in ("--set", o)]]
    subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True)
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["tokens_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--baseline", type=Path, help="a checkout of an older commit, for the tokens/s comparison")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict = {"sizes": [one_size(n) for n in args.sizes]}
    for row in results["sizes"]:
        print(json.dumps(row), flush=True)
    smallest, largest = results["sizes"][0], results["sizes"][-1]
    results["peak_ratio_largest_to_smallest"] = round(min(largest["train_peak_mb"]) / min(smallest["train_peak_mb"]), 3)
    if args.baseline:
        ours, theirs = [], []
        for _ in range(args.rounds):  # alternated, so that the machine's drift falls on both alike
            theirs.append(tokens_per_second(args.baseline.resolve(), WORK / "runs" / "baseline"))
            ours.append(tokens_per_second(REPO, WORK / "runs" / "ours"))
        ratio = round(statistics.median(ours) / statistics.median(theirs), 3)
        results["multi30k_tokens_per_s"] = {"ours": ours, "baseline": theirs, "ratio_of_medians": ratio}
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
