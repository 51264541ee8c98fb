"""Quality per CPU hour (issue 23): subword regularisation, checkpoint averaging, ensembles and distillation,
each against the quick-start recipe trained the usual way, on Multi30k de→en.

    python -m bench.quality [--minutes 10] [--copies 3] [--average-last 3]

Trains, in turn and alone on the machine (each for the same wall-clock budget, `configs/quickstart.yaml`):
  base     the recipe as it is (seed 1)
  sampled  the same with tokenizer.sampling_copies=COPIES (subword regularisation)
then scores on Multi30k val (to choose on) and test2016 (to report), greedy and beam 5:
  each model; the average of base's last checkpoints against its best; the ensemble base+sampled (they share
  their SentencePiece models); a student trained for the same budget on that ensemble's beam-5 translations
  of the training source (distilled), whose greedy output is compared with its own beam 5.
Runs that finished before are reused (delete bench/results/quality/RUN to train it again). The timings of the
distillation (translation of 29k sentences) and of decoding (sentences/s) are recorded with the scores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import MULTI30K

WORK = Path("bench/results/quality")
SEQ2SEQ = [sys.executable, "-m", "seq2seq"]
SETS = {"val": (MULTI30K / "val.de.gz", MULTI30K / "val.en.gz"),
        "test2016": (MULTI30K / "test_2016_flickr.de.gz", MULTI30K / "test_2016_flickr.en.gz")}


def _data_sets() -> list[str]:
    return [f"data.train={MULTI30K}/train", f"data.valid={MULTI30K}/val"]


def train(name: str, minutes: float, sets: list[str]) -> Path:
    """A quick-start run of `minutes` (reused when its best.pt exists); returns its run directory."""
    run_dir = WORK / name
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        overrides = [*_data_sets(), f"train.max_minutes={minutes}", *sets]
        command = [*SEQ2SEQ, "train", "configs/quickstart.yaml", "--run-dir", str(run_dir),
                   *[x for o in overrides for x in ("--set", o)]]
        started = time.time()
        subprocess.run(command, check=True, capture_output=True, text=True)
        (run_dir / "wall_s.txt").write_text(f"{time.time() - started:.1f}\n")
    return run_dir


def evaluate(checkpoints: list[str], beam: int, test_set: str) -> dict:
    src, ref = SETS[test_set]
    flags = [x for c in checkpoints for x in ("--checkpoint", c)]
    out = subprocess.run([*SEQ2SEQ, "evaluate", *flags, "--src", str(src), "--ref", str(ref), "--metrics", "bleu",
                          "--beam-size", str(beam), "--json"], check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {"bleu": round(report["bleu"]["score"], 2), "sent_per_s": round(report["sentences"] / report["seconds"], 1)}


def scores(checkpoints: list[str]) -> dict:
    """BLEU on val and test2016, greedy and beam 5."""
    return {f"{test_set}_{'greedy' if beam == 1 else 'beam5'}": evaluate(checkpoints, beam, test_set)
            for test_set in SETS for beam in (1, 5)}


def distill_corpus(teachers: list[str]) -> tuple[Path, float]:
    """The training source translated by `teachers` (beam 5); resumed if a run was cut short."""
    prefix = WORK / "distilled" / "multi30k"
    started = time.time()
    flags = [x for c in teachers for x in ("--checkpoint", c)]
    subprocess.run([*SEQ2SEQ, "distill", "configs/quickstart.yaml", *flags, "--beam-size", "5", "--output",
                    str(prefix), *[x for o in _data_sets() for x in ("--set", o)]],
                   check=True, capture_output=True, text=True)
    return prefix, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="each training's budget")
    parser.add_argument("--copies", type=int, default=3, help="segmentations for the sampled run")
    parser.add_argument("--average-last", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    saved = WORK / "results.json"
    results: dict = json.loads(saved.read_text()) if saved.is_file() else {}  # a rerun scores only what is new
    results["minutes"] = args.minutes

    def scored(name: str, checkpoints: list[str]) -> dict:
        if name not in results:
            results[name] = scores(checkpoints)
            print(json.dumps({name: results[name]}), flush=True)
            saved.write_text(json.dumps(results, indent=2))
        return results[name]

    base = train("base", args.minutes, [])
    scored("base", [str(base / "checkpoints/best.pt")])
    averaged = base / "averaged.pt"
    subprocess.run([*SEQ2SEQ, "average", str(base / "checkpoints"), "--last", str(args.average_last),
                    "--output", str(averaged)], check=True, capture_output=True, text=True)
    scored(f"base_average_last_{args.average_last}", [str(averaged)])
    sampled = train(f"sampled{args.copies}", args.minutes, [f"tokenizer.sampling_copies={args.copies}"])
    scored(f"sampled{args.copies}", [str(sampled / "checkpoints/best.pt")])
    # The sampled run's SentencePiece models are base's (trained on the same text with the same settings;
    # sampling changes only the prepared copies), so the two ensemble; a third training would cost 10 minutes.
    members = [str(base / "checkpoints/best.pt"), str(sampled / "checkpoints/best.pt")]
    scored("ensemble_base_sampled", members)
    # The teacher is whichever of base and the ensemble scores higher on val (never chosen on test2016).
    teachers = max([members[:1], members], key=lambda t: results["ensemble_base_sampled" if len(t) > 1 else
                                                                  "base"]["val_beam5"]["bleu"])
    prefix, distill_s = distill_corpus(teachers)
    results["distillation"] = {"seconds": round(distill_s, 1), "teachers": teachers}
    student = train("student", args.minutes, [f"data.train={prefix}"])
    scored("student", [str(student / "checkpoints/best.pt")])


if __name__ == "__main__":
    main()
