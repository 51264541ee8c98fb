"""Joey NMT and OpenNMT-py trained and decoded on the same data with the same model (configs/peer_match.yaml).

    bench/peer_setup/setup.sh               # once: their virtual environments and data under $PEERS_DIR
    python -m bench.peers --steps 300       # train both, decode test2016 greedy and beam 5, print JSON

Each toolkit reports its own training tokens/s (the median of its log lines) and runs in its own process
with 2 threads; decoding is timed as a whole process, and as generation only where the toolkit says it.
Workarounds they need on torch 2.13: OpenNMT-py loads its checkpoints only with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 and samples at beam 1 unless -random_sampling_topk 1; Joey NMT's
`translate -o` crashes after decoding, so its hypotheses are read from stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from bench.common import median, run_measured
from seq2seq.evaluate import score_corpus

PEERS_DIR = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
SETUP = Path(__file__).parent / "peer_setup"
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def available() -> bool:
    return (PEERS_DIR / "venv_onmt/bin/onmt_train").exists() and (PEERS_DIR / "data/sp/test.en").exists()


def _config(name: str, work: Path, steps: int) -> Path:
    text = (SETUP / f"{name}.yaml").read_text().format(work=work, data=PEERS_DIR / "data", steps=steps)
    path = work / "train.yaml"
    path.write_text(text)
    return path


def _fresh(work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    (work / "model").mkdir(parents=True)
    return work


def train_onmt(steps: int) -> dict:
    work = _fresh(PEERS_DIR / "bench_onmt")
    config = _config("onmt", work, steps)
    bin_dir = PEERS_DIR / "venv_onmt/bin"
    run_measured([str(bin_dir / "onmt_build_vocab"), "-config", str(config), "-n_sample", "-1"], env=THREADS)
    measured = run_measured([str(bin_dir / "onmt_train"), "-config", str(config)], env=THREADS)
    rates = [float(tgt) for _, tgt in re.findall(r"(\d+)/\s*(\d+) tok/s", measured.stderr)]  # source/target
    return {"toolkit": "OpenNMT-py", "steps": steps, "wall_s": round(measured.wall_s, 1),
            "peak_mb": round(measured.peak_mb), "tgt_tokens_per_s": median(rates) if rates else None,
            "checkpoint": str(work / f"model/model_step_{steps}.pt")}


def train_joey(steps: int) -> dict:
    work = _fresh(PEERS_DIR / "bench_joey")
    config = _config("joey", work, steps)
    measured = run_measured([str(PEERS_DIR / "venv_joey/bin/python"), "-m", "joeynmt", "train", str(config),
                             "--skip-test"], env=THREADS)
    rates = [float(r) for r in re.findall(r"Tokens per Sec:\s*([\d.]+)", (work / "model/train.log").read_text())]
    return {"toolkit": "Joey NMT", "steps": steps, "wall_s": round(measured.wall_s, 1),
            "peak_mb": round(measured.peak_mb), "tgt_tokens_per_s": median(rates) if rates else None,
            "checkpoint": str(work / "model/latest.ckpt")}


def _bleu(pieces_file: Path) -> float:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(PEERS_DIR / "data/spm_en.model"))
    hyps = [processor.decode(line.split()) for line in pieces_file.read_text(encoding="utf-8").splitlines()]
    refs = (PEERS_DIR / "data/raw/test.en").read_text(encoding="utf-8").splitlines()
    return round(score_corpus(hyps, refs, ["bleu"])["bleu"]["score"], 2)


def decode_onmt(checkpoint: str, beam: int) -> dict:
    work = PEERS_DIR / "bench_onmt"
    output = work / f"test.beam{beam}.pieces"
    command = [str(PEERS_DIR / "venv_onmt/bin/onmt_translate"), "-model", checkpoint,
               "-src", str(PEERS_DIR / "data/sp/test.de"), "-output", str(output), "-beam_size", str(beam),
               "-batch_size", "64", "-batch_type", "sents",
               "-max_length", "100", "-length_penalty", "wu", "-alpha", "1.0", "-report_time", "-gpu", "-1"]
    if beam == 1:
        command += ["-random_sampling_topk", "1"]
    measured = run_measured(command, env={**THREADS, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    generation = re.search(r"Total translation time \(s\):\s*([\d.]+)", measured.stdout + measured.stderr)
    return _decode_result("OpenNMT-py", beam, measured, float(generation.group(1)) if generation else None, output)


def decode_joey(checkpoint: str, beam: int) -> dict:
    work = PEERS_DIR / "bench_joey"
    config = yaml.safe_load((work / "train.yaml").read_text())
    config["testing"].update(load_model=checkpoint, beam_size=beam, beam_alpha=1.0, batch_size=64,
                             batch_type="sentence", max_output_length=100)
    decode_config = work / f"decode_beam{beam}.yaml"
    decode_config.write_text(yaml.safe_dump(config))
    measured = run_measured([str(PEERS_DIR / "venv_joey/bin/python"), "-m", "joeynmt", "translate", str(decode_config)],
                            env=THREADS, stdin_path=PEERS_DIR / "data/sp/test.de")
    output = work / f"test.beam{beam}.pieces"
    log_line = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ - ")
    decoded = [line for line in measured.stdout.splitlines() if not log_line.match(line)]
    output.write_text("\n".join(decoded) + "\n", encoding="utf-8")
    generation = re.search(r"[Gg]eneration took ([\d.]+)", measured.stdout + measured.stderr)
    return _decode_result("Joey NMT", beam, measured, float(generation.group(1)) if generation else None, output)


def _decode_result(toolkit: str, beam: int, measured, generation_s, output: Path) -> dict:
    lines = output.read_text(encoding="utf-8").splitlines()
    tokens = sum(len(line.split()) + 1 for line in lines)
    return {"toolkit": toolkit, "beam": beam, "sentences": len(lines), "process_s": round(measured.wall_s, 2),
            "process_sentences_per_s": round(len(lines) / measured.wall_s, 1),
            "generation_s": generation_s,
            "generation_sentences_per_s": round(len(lines) / generation_s, 1) if generation_s else None,
            "generation_tgt_tokens_per_s": round(tokens / generation_s) if generation_s else None,
            "peak_mb": round(measured.peak_mb), "bleu": _bleu(output)}


DECODERS = {"OpenNMT-py": decode_onmt, "Joey NMT": decode_joey}


def train_peers(onmt_steps: int, joey_steps: int) -> list[dict]:
    """Both peers trained for a fixed number of steps; each entry names its toolkit and checkpoint."""
    return [train_onmt(onmt_steps), train_joey(joey_steps)]


def decode_peer(trained: dict, beam: int) -> dict:
    """test2016 decoded once by the toolkit that trained `trained` (an entry of `train_peers`)."""
    return DECODERS[trained["toolkit"]](trained["checkpoint"], beam)


def peers_benchmark(onmt_steps: int, joey_steps: int) -> dict:
    """Train both peers, then decode test2016 greedy and beam 5 once with each."""
    trained = train_peers(onmt_steps, joey_steps)
    return {"training": trained, "decoding": [decode_peer(t, beam) for t in trained for beam in (1, 5)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onmt-steps", type=int, default=300)
    parser.add_argument("--joey-steps", type=int, default=150)
    args = parser.parse_args()
    if not available():
        raise SystemExit(f"peers are not installed in {PEERS_DIR}: run bench/peer_setup/setup.sh")
    print(json.dumps(peers_benchmark(args.onmt_steps, args.joey_steps), indent=1))


if __name__ == "__main__":
    main()
