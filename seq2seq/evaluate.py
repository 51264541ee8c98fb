"""Batch evaluation: translate a source file with a checkpoint and score it against references with sacrebleu."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence, TextIO

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.config import DecodeConfig
from seq2seq.corpus import open_text, read_lines
from seq2seq.documents import translate_document_stream
from seq2seq.errors import UserError
from seq2seq.translate import Translator

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


def parse_metrics(spec: str) -> list[str]:
    """'bleu,chrf' → ['bleu', 'chrf'], refusing unknown names."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f"--metrics must be a comma-separated subset of {','.join(METRICS)}, got {spec!r}")
    return names


def score_corpus(hypotheses: Sequence[str], references: Sequence[str], metrics: Sequence[str]) -> dict:
    """sacrebleu corpus scores: {name: {"score", "signature", "text"}}."""
    results = {}
    for name in metrics:
        metric = METRICS[name]()
        score = metric.corpus_score(list(hypotheses), [list(references)])
        results[name] = {"score": round(score.score, 4), "signature": str(metric.get_signature()), "text": str(score)}
    return results


def evaluate(translator: Translator, src_path: str | Path, ref_path: str | Path, options: DecodeConfig,
             metrics: Sequence[str], hyp_out: Optional[TextIO] = None, progress: bool = False,
             split: bool = False) -> dict:
    """Translate `src_path` in streamed chunks (memory stays flat), score against `ref_path`.

    Each line is translated as one sentence, as it is (test sets are line-aligned, one segment per line);
    with `split` each line is split into sentences first, as `seq2seq translate` does by default.

    Returns the metric results plus `sentences` and `seconds` (translation wall time).
    """
    from tqdm import tqdm

    references = read_lines(ref_path)
    hypotheses: list[str] = []
    started = time.perf_counter()
    with open_text(src_path) as source:
        stream = translate_document_stream(translator, source, options=options, split=split)
        for translation in tqdm(stream, total=len(references), unit="sent", desc="translating", disable=not progress):
            hypotheses.append(translation.text)
            if hyp_out is not None:
                hyp_out.write(translation.text + "\n")
    seconds = time.perf_counter() - started
    if len(hypotheses) != len(references):
        raise UserError(f"--src has {len(hypotheses)} lines but --ref has {len(references)}")
    results = score_corpus(hypotheses, references, metrics)
    return {**results, "signature": {name: results[name]["signature"] for name in metrics},
            "sentences": len(hypotheses), "seconds": round(seconds, 3),
            "beam_size": options.beam_size, "length_penalty": options.length_penalty}
