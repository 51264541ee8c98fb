"""Sequence-level knowledge distillation (Kim & Rush, 2016): a teacher's translations of the training source
become the target side of a new corpus, on which a student then trains with `seq2seq train`.

`distill` writes PREFIX.SRC (the training source, cleaned, as prepare reads it) and PREFIX.TGT (the teacher's
beam-search translations, line for line) a chunk at a time. After each chunk both files are flushed to the disk
and their sizes recorded in PREFIX.progress.json (replaced atomically); a restarted distillation cuts the
files back to the recorded sizes and goes on from there, so a kill costs at most one chunk and never leaves a
half-written or misaligned line. The progress file also records the teacher and the decoding options: a
rerun with others is refused rather than mixed into the same corpus.
"""
from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from seq2seq.config import Config, DecodeConfig
from seq2seq.corpus import in_chunks
from seq2seq.errors import UserError
from seq2seq.faults import fault_point
from seq2seq.prepare import corpus_pairs
from seq2seq.translate import Translator

CHUNK_LINES = 2_000  # lines translated and committed together


def distill(config: Config, translator: Translator, prefix: str | Path, options: DecodeConfig, *,
            teachers: list[str], chunk_lines: int = CHUNK_LINES, progress: bool = True) -> dict:
    """Translate the config's training source with `translator` into the corpus PREFIX.SRC / PREFIX.TGT;
    resumes an interrupted run. Returns the progress record ({"lines", "complete", ...})."""
    d = config.data
    if (translator.src_lang, translator.tgt_lang) != (d.src_lang, d.tgt_lang):
        raise UserError(f"the teacher translates {translator.src_lang}→{translator.tgt_lang}, the config's data "
                        f"is {d.src_lang}→{d.tgt_lang}")
    src_path, tgt_path = Path(f"{prefix}.{d.src_lang}"), Path(f"{prefix}.{d.tgt_lang}")
    state_path = Path(f"{prefix}.progress.json")
    identity = {"teachers": teachers, "options": options.model_dump(mode="json"),
                "corpora": [c.path for c in d.train_corpora], "max_pairs": d.max_pairs}
    state = _resumed_state(state_path, identity, src_path, tgt_path)
    if state["complete"]:
        return state
    src_path.parent.mkdir(parents=True, exist_ok=True)
    sources = islice(_training_sources(config), state["lines"], None)
    bar = tqdm(desc="distilling", unit=" lines", initial=state["lines"], disable=not progress, dynamic_ncols=True)
    with open(src_path, "r+b" if src_path.exists() else "wb") as src_out, \
            open(tgt_path, "r+b" if tgt_path.exists() else "wb") as tgt_out:
        for out, size in ((src_out, state["src_bytes"]), (tgt_out, state["tgt_bytes"])):
            out.truncate(size)  # whatever a killed run wrote after its last recorded chunk
            out.seek(size)
        for chunk in in_chunks(sources, chunk_lines):
            translations = translator.translate(chunk, options)
            src_out.write("".join(f"{line}\n" for line in chunk).encode("utf-8"))
            tgt_out.write("".join(f"{_one_line(t.text)}\n" for t in translations).encode("utf-8"))
            for out in (src_out, tgt_out):
                out.flush()
                os.fsync(out.fileno())
            state = {**state, "lines": state["lines"] + len(chunk), "src_bytes": src_out.tell(),
                     "tgt_bytes": tgt_out.tell()}
            _write_state(state_path, state)
            fault_point("distill-chunk")
            bar.update(len(chunk))
    bar.close()
    state = {**state, "complete": True}
    _write_state(state_path, state)
    return state


def _training_sources(config: Config) -> Iterator[str]:
    """The source side of every training corpus, in order, cleaned and cut as prepare reads them."""
    for corpus in config.data.train_corpora:
        for src, _ in corpus_pairs(corpus, config):
            yield src


def _one_line(text: str) -> str:
    """A translation as one line of the corpus (a model never outputs a line break; this makes sure)."""
    return " ".join(text.splitlines())


def _resumed_state(state_path: Path, identity: dict, src_path: Path, tgt_path: Path) -> dict:
    """The recorded progress for the same teacher and options; a fresh start when there is none."""
    fresh = {**identity, "lines": 0, "src_bytes": 0, "tgt_bytes": 0, "complete": False}
    if not state_path.exists():
        if src_path.exists() or tgt_path.exists():
            raise UserError(f"{src_path} or {tgt_path} exists without {state_path}: not a distillation to "
                            "resume; remove it or choose another --output")
        return fresh
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {state_path}: {err}") from None
    if {k: state.get(k) for k in identity} != identity:
        raise UserError(f"{state_path} records another teacher, decoding options or corpus; remove PREFIX.* or "
                        "choose another --output")
    for path, size in ((src_path, state["src_bytes"]), (tgt_path, state["tgt_bytes"])):
        if not path.exists() or path.stat().st_size < size:
            raise UserError(f"{path} is shorter than {state_path} records: it was changed; distil again into "
                            "another --output")
    return state


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)
