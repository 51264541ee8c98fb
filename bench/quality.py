"""Quality per CPU hour (issue 23): subword regularisation, checkpoint averaging, ensembles and distillation,
on Multi30k de→en.

    python -m bench.quality [--minutes 10] [--copies 3] [--average-last 3]
    python -m bench.quality --pipeline [--config configs/multi30k_de_en.yaml] [--teacher-minutes 20] \
        [--student-minutes 20] [--work DIR] [--no-control] [--student-set KEY=VALUE ...]

The study (default) trains, in turn and alone on the machine (each for the same wall-clock budget,
`configs/quickstart.yaml`):
  base     the recipe as it is (seed 1)
  sampled  the same with tokenizer.sampling_copies=COPIES (subword regularisation)
then scores on Multi30k val (to choose on) and test2016 (to report), greedy and beam 5:
  each model; the average of base's last checkpoints against its best; the ensemble base+sampled (they share
  their SentencePiece models); a student trained for the same budget on that ensemble's beam-5 translations
  of the training source (distilled), whose greedy output is compared with its own beam 5.
The pipeline trains CONFIG for TEACHER minutes, distils the training source with it (beam 5), then starts two
runs from the teacher's weights (train.init_from) for STUDENT minutes each, at the fine-tuning rate below:
  student  on the distilled corpus
  control  on the original corpus (what the same minutes give without distillation)
and scores the teacher, both, and their ensemble (--no-control: the student alone); its wall-clock total is the
teacher's, the distillation's and the student's minutes. --student-set adds config overrides to the student's
and the control's training (e.g. train.early_stopping.patience=1000 to train the whole budget: their schedule
anneals from the start, so early stopping counts every stall).
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


FINE_TUNING = ["train.lr=0.001", "train.anneal_start=0.0"]  # from a trained model: cosine from a lower rate


def _data_sets() -> list[str]:
    return [f"data.train={MULTI30K}/train", f"data.valid={MULTI30K}/val"]


def train(name: str, minutes: float, sets: list[str], config: str = "configs/quickstart.yaml",
          work: Path = WORK) -> Path:
    """A run of `config` for `minutes` (reused when its best.pt exists); returns its run directory."""
    run_dir = work / name
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        overrides = [*_data_sets(), f"train.max_minutes={minutes}", *sets]
        command = [*SEQ2SEQ, "train", config, "--run-dir", str(run_dir),
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


def distill_corpus(teachers: list[str], config: str = "configs/quickstart.yaml", work: Path = WORK
                   ) -> tuple[Path, float]:
    """The training source translated by `teachers` (beam 5); resumed if a run was cut short."""
    prefix = work / "distilled" / "multi30k"
    started = time.time()
    flags = [x for c in teachers for x in ("--checkpoint", c)]
    subprocess.run([*SEQ2SEQ, "distill", config, *flags, "--beam-size", "5", "--output",
                    str(prefix), *[x for o in _data_sets() for x in ("--set", o)]],
                   check=True, capture_output=True, text=True)
    return prefix, time.time() - started


class Results:
    """Scores kept in WORK/results.json as they come: a rerun scores only what is new."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text()) if path.is_file() else {}

    def scored(self, name: str, checkpoints: list[str]) -> dict:
        if name not in self.data:
            self.data[name] = scores(checkpoints)
            print(json.dumps({name: self.data[name]}), flush=True)
            self.save()
        return self.data[name]

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2))


def pipeline(config: str, teacher_minutes: float, student_minutes: float, work: Path, control: bool,
             student_sets: list[str]) -> None:
    """Teacher, distillation, and a student and a control started from the teacher (see the docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    results = Results(work / "results.json")
    results.data.update(teacher_minutes=teacher_minutes, student_minutes=student_minutes, config=config,
                        student_sets=student_sets)
    teacher = str(train("teacher", teacher_minutes, [], config, work) / "checkpoints/best.pt")
    results.scored("teacher", [teacher])
    if "distillation" not in results.data:
        prefix, seconds = distill_corpus([teacher], config, work)
        results.data["distillation"] = {"seconds": round(seconds, 1), "teachers": [teacher], "prefix": str(prefix)}
        results.save()
    prefix = results.data["distillation"]["prefix"]
    started_from_teacher = [f"train.init_from={teacher}", *FINE_TUNING, *student_sets]
    student = train("student", student_minutes, [*started_from_teacher, f"data.train={prefix}"], config, work)
    results.scored("student", [str(student / "checkpoints/best.pt")])
    if control:
        control_run = train("control", student_minutes, started_from_teacher, config, work)
        results.scored("control", [str(control_run / "checkpoints/best.pt")])
        results.scored("ensemble_student_control", [str(r / "checkpoints/best.pt") for r in (student, control_run)])
    results.data["total_minutes"] = round(teacher_minutes + student_minutes
                                          + results.data["distillation"]["seconds"] / 60, 1)
    results.save()


def study(minutes: float, copies: int, average_last: int) -> None:
    """The quick-start study: base, averaging, sampling, ensemble, distilled student (see the docstring)."""
    WORK.mkdir(parents=True, exist_ok=True)
    results = Results(WORK / "results.json")
    results.data["minutes"] = minutes
    base = train("base", minutes, [])
    results.scored("base", [str(base / "checkpoints/best.pt")])
    averaged = base / "averaged.pt"
    subprocess.run([*SEQ2SEQ, "average", str(base / "checkpoints"), "--last", str(average_last),
                    "--output", str(averaged)], check=True, capture_output=True, text=True)
    results.scored(f"base_average_last_{average_last}", [str(averaged)])
    sampled = train(f"sampled{copies}", minutes, [f"tokenizer.sampling_copies={copies}"])
    results.scored(f"sampled{copies}", [str(sampled / "checkpoints/best.pt")])
    # The sampled run's SentencePiece models are base's (trained on the same text with the same settings;
    # sampling changes only the prepared copies), so the two ensemble; a third training would cost 10 minutes.
    members = [str(base / "checkpoints/best.pt"), str(sampled / "checkpoints/best.pt")]
    results.scored("ensemble_base_sampled", members)
    # The teacher is whichever of base and the ensemble scores higher on val (never chosen on test2016).
    teachers = max([members[:1], members], key=lambda t: results.data["ensemble_base_sampled" if len(t) > 1 else
                                                                       "base"]["val_beam5"]["bleu"])
    prefix, distill_s = distill_corpus(teachers)
    results.data["distillation"] = {"seconds": round(distill_s, 1), "teachers": teachers}
    student = train("student", minutes, [f"data.train={prefix}"])
    results.scored("student", [str(student / "checkpoints/best.pt")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="the study: each training's budget")
    parser.add_argument("--copies", type=int, default=3, help="the study: segmentations for the sampled run")
    parser.add_argument("--average-last", type=int, default=3)
    parser.add_argument("--pipeline", action="store_true", help="teacher → distillation → student from the teacher")
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml", help="the pipeline's recipe")
    parser.add_argument("--teacher-minutes", type=float, default=20.0)
    parser.add_argument("--student-minutes", type=float, default=20.0)
    parser.add_argument("--work", type=Path, help="the pipeline's folder (default: bench/results/quality/CONFIG)")
    parser.add_argument("--no-control", action="store_true", help="the pipeline without its control run")
    parser.add_argument("--student-set", action="append", default=[], metavar="KEY=VALUE",
                        help="the pipeline: a config override for the student's (and control's) training")
    args = parser.parse_args()
    if args.pipeline:
        work = args.work or WORK / Path(args.config).stem
        pipeline(args.config, args.teacher_minutes, args.student_minutes, work, control=not args.no_control,
                 student_sets=args.student_set)
    else:
        study(args.minutes, args.copies, args.average_last)


if __name__ == "__main__":
    main()
