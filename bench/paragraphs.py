"""Paragraphs against lines: Multi30k val and test2016 joined into paragraphs of k sentences, translated through
the CLI and through the service's /translate, against the same sentences one per line, same model and settings.

Both sides are scored on the same units: the line-by-line output is joined into the same paragraphs as the
references, so the BLEU difference is what segmentation and reassembly cost. Captions without a final full
stop are given one (on both sides, counted in the report): a paragraph of unpunctuated captions has no
sentence boundary for any segmenter to find. Sentences/s is wall time over all sentences, the median of the
repeats; within each repeat the line-by-line run and the paragraph runs alternate.

    .venv/bin/python -m bench.paragraphs --checkpoint runs/quickstart/checkpoints/best.pt [--repeats 3] [--as-is]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sacrebleu.metrics import BLEU

from seq2seq.cli import main as cli_main
from seq2seq.corpus import read_lines

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
SETS = {"val": "val", "test2016": "test_2016_flickr"}
REQUEST_SENTENCES = 24  # sentences per HTTP request on both sides, so request overhead is the same


def punctuated(lines: list[str]) -> tuple[list[str], int]:
    fixed = [line if line.rstrip()[-1:] in ".!?" else line.rstrip() + "." for line in lines]
    return fixed, sum(a != b for a, b in zip(lines, fixed))


def paragraphs(lines: list[str], k: int) -> list[str]:
    return [" ".join(lines[i:i + k]) for i in range(0, len(lines), k)]


def bleu(hypotheses: list[str], references: list[str]) -> float:
    return round(BLEU().corpus_score(hypotheses, [references]).score, 2)


def through_cli(checkpoint: str, texts: list[str], split: bool, folder: Path) -> tuple[list[str], float]:
    source, output = folder / "src.txt", folder / "hyp.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    started = time.perf_counter()
    args = ["translate", "--checkpoint", checkpoint, "--input", str(source), "--output", str(output)]
    if cli_main(args + ([] if split else ["--no-split"])) != 0:
        raise SystemExit("the CLI failed")
    return output.read_text(encoding="utf-8").splitlines(), time.perf_counter() - started


def through_service(url: str, texts: list[str], per_request: int) -> tuple[list[str], float]:
    out: list[str] = []
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300) as http:
        for i in range(0, len(texts), per_request):
            answer = http.post("/translate", json={"q": texts[i:i + per_request], "source": "de", "target": "en"})
            answer.raise_for_status()
            out += answer.json()["translatedText"]
    return out, time.perf_counter() - started


def run(checkpoint: str, ks: list[int], repeats: int, as_is: bool = False) -> list[dict]:
    from service.app import create_app, load_registry
    from service.settings import ServiceSettings
    from tests.conftest import serve_in_thread

    settings = ServiceSettings(checkpoints=[checkpoint], max_sentences=4 * REQUEST_SENTENCES)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(settings, load_registry(settings))) as url:
        for name, prefix in SETS.items():
            src, added = punctuated(read_lines(DATA / f"{prefix}.de.gz"))
            if as_is:
                src, added = read_lines(DATA / f"{prefix}.de.gz"), 0
            ref = read_lines(DATA / f"{prefix}.en.gz")
            for path in ("cli", "service"):
                inputs = {k: paragraphs(src, k) if k > 1 else src for k in [1, *ks]}
                times: dict[int, list[float]] = {k: [] for k in inputs}
                hyps: dict[int, list[str]] = {}
                for _ in range(repeats):  # the sizes alternate within each repeat, so they share the machine's mood
                    for k, texts in inputs.items():
                        hyps[k], seconds = (through_cli(checkpoint, texts, k > 1, Path(tmp)) if path == "cli"
                                            else through_service(url, texts, max(1, REQUEST_SENTENCES // k)))
                        times[k].append(seconds)
                for k in inputs:
                    rows.append({"set": name, "path": path, "k": k, "sentences": len(src), "punctuation_added": added,
                                 "bleu_lines": bleu(hyps[k], ref) if k == 1 else None,
                                 "hyps": hyps[k], "seconds": statistics.median(times[k])})
            for row in [r for r in rows if r["set"] == name]:  # every row scored on every paragraph size
                line_hyps = next(r["hyps"] for r in rows
                                 if r["set"] == name and r["path"] == row["path"] and r["k"] == 1)
                row["sentences_per_s"] = round(row["sentences"] / row["seconds"], 1)
                row["bleu_by_k"] = {k: bleu(paragraphs(line_hyps, k) if row["k"] == 1 else row["hyps"],
                                            paragraphs(ref, k)) for k in ks if row["k"] in (1, k)}
    for row in rows:
        del row["hyps"]
    return rows


def report(rows: list[dict]) -> str:
    lines = ["| set | path | input | BLEU (scored on paragraphs of k) | line-by-line BLEU on the same k | Δ | "
             "sentences/s | vs lines |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["k"] == 1:
            continue
        base = next(r for r in rows if (r["set"], r["path"], r["k"]) == (row["set"], row["path"], 1))
        ours, theirs = row["bleu_by_k"][row["k"]], base["bleu_by_k"][row["k"]]
        lines.append(f"| {row['set']} | {row['path']} | paragraphs of {row['k']} | {ours} | {theirs} | "
                     f"{ours - theirs:+.2f} | {row['sentences_per_s']} | "
                     f"{row['sentences_per_s'] / base['sentences_per_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--k", type=int, action="append", help="paragraph sizes (default 3 and 6)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell; the median is reported")
    parser.add_argument("--as-is", action="store_true", help="join the captions as they are, unpunctuated ones too")
    args = parser.parse_args()
    rows = run(args.checkpoint, args.k or [3, 6], args.repeats, args.as_is)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"paragraphs-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rows, indent=1))
    print(report(rows))
    print(json.dumps({"line_bleu": {f"{r['set']}/{r['path']}": r["bleu_lines"] for r in rows if r["k"] == 1}}))


if __name__ == "__main__":
    main()
