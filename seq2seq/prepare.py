"""Prepared training data: the training corpora cleaned, deduplicated and tokenized once, into flat arrays
on disk that every later start and resume opens in seconds, whatever the corpus size.

A prepared folder is named by a key over what its content depends on (the corpus files' size, modification
time and sampled content; the settings that change what is read or how it is tokenized; the format version),
so a changed corpus or setting prepares again and nothing stale is ever used. It is built in a hidden
temporary folder and renamed into place when complete: a kill while preparing leaves nothing that a later
run mistakes for prepared data. Length filtering happens when the folder is opened (vectorised, cheap), so
changing `max_length` reuses it. Validation sets are small and encoded at every start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import sys
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm import tqdm

from seq2seq.batching import FileArray, PairArrays, Part, TokenArray, TrainingPairs, id_dtype
from seq2seq.config import Config, CorpusConfig
from seq2seq.corpus import cleaned, corpus_files, fingerprint, in_chunks, iter_pairs, read_parallel
from seq2seq.encoding import ChunkEncoder, EncodedChunk, Sampling, encode_in_worker, start_worker
from seq2seq.errors import UserError
from seq2seq.faults import fault_point
from seq2seq.tokenizer import Tokenizer, train_tokenizers

log = logging.getLogger("seq2seq.train")

FORMAT_VERSION = 1  # bump when the folder's layout or meaning changes: older folders are then prepared again
CHUNK_PAIRS = 10_000  # pairs per encoding task
SMALL_CORPUS_BYTES = 4 << 20  # below this, encoding in worker processes costs more than it saves
TMP_MARK = ".tmp"


@dataclass
class ValidationSet:
    name: str
    pairs: TrainingPairs  # for the validation loss
    sources: list[str]  # for BLEU
    references: list[str]


@dataclass
class PreparedData:
    train: TrainingPairs
    valid: list[ValidationSet]  # the first decides early stopping
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    folder: Path


def prepare_data(config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]] = None, *,
                 progress: bool = True) -> PreparedData:
    """The training data, prepared now if it is not yet (training SentencePiece unless `tokenizers` are
    given, as on resume), and the validation sets."""
    folder = ensure_prepared(config, tokenizers, progress=progress)
    copies, parts, (src_tok, tgt_tok) = open_prepared(folder, config)
    train = TrainingPairs(copies[0], parts, batch_tokens=config.train.batch_tokens, seed=config.seed,
                          sampled=copies[1:], equal_source=config.train.equal_source_lengths)
    if len(train) == 0:
        raise UserError(f"no training pairs left in {config.data.train} after cleaning and length filtering")
    valid = [validation_set(spec, config, src_tok, tgt_tok) for spec in config.data.valid_sets]
    return PreparedData(train, valid, src_tok, tgt_tok, folder)


def ensure_prepared(config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]] = None, *,
                    progress: bool = True) -> Path:
    """The folder of prepared training data for `config`, prepared first if needed.

    Given tokenizers (a resumed run's, or rank 0's) reuse the folder prepared with its own SentencePiece
    models when those are the same; otherwise the corpus is encoded with the given ones, in a folder of its own."""
    inputs = _key_inputs(config, None)  # the corpus files are fingerprinted once per start
    folder = _folder(config, inputs)
    if tokenizers is not None and not (_complete(folder) and _protos(folder) == _proto_pair(tokenizers)):
        inputs = _with_given(inputs, tokenizers)
        folder = _folder(config, inputs)
    if not _complete(folder):
        _build(folder, config, tokenizers, inputs, progress)
    return folder


def prepared_folder(config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]] = None) -> Path:
    return _folder(config, _key_inputs(config, tokenizers))


def _folder(config: Config, inputs: dict) -> Path:
    digest = hashlib.blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=8).hexdigest()
    return Path(config.data.prepared_dir) / f"{_safe(config.name)}-{digest}"


def _key_inputs(config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]]) -> dict:
    """Everything a prepared folder's content depends on (weights, validation sets and lengths do not)."""
    d = config.data
    corpora = [{"files": [fingerprint(f) for f in corpus_files(c.path, d.src_lang, d.tgt_lang)]}  # absolute paths
               for c in d.train_corpora]
    inputs = {"format": FORMAT_VERSION, "corpora": corpora, "src_lang": d.src_lang, "tgt_lang": d.tgt_lang,
              "max_pairs": d.max_pairs, "tokenizer": _tokenizer_key(config), "seed": config.seed,
              "given_tokenizers": None}
    return inputs if tokenizers is None else _with_given(inputs, tokenizers)


def _tokenizer_key(config: Config) -> dict:
    """The tokenizer settings; the sampling ones only when sampling is on (otherwise they change nothing, and
    data prepared before they existed keeps its key)."""
    settings = config.tokenizer.model_dump(mode="json")
    if config.tokenizer.sampling_copies == 1:
        for name in ("sampling_copies", "sampling_alpha", "sampling_nbest"):
            settings.pop(name)
    return settings


def _with_given(inputs: dict, tokenizers: tuple[Tokenizer, Tokenizer]) -> dict:
    """The key of data encoded with given tokenizers rather than ones trained on the corpus."""
    return {**inputs, "given_tokenizers": [hashlib.sha256(p).hexdigest() for p in _proto_pair(tokenizers)]}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "data"


def _proto_pair(tokenizers: tuple[Tokenizer, Tokenizer]) -> tuple[bytes, bytes]:
    return tokenizers[0].model_proto, tokenizers[1].model_proto


def _protos(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "src.model").read_bytes(), (folder / "tgt.model").read_bytes()


def _complete(folder: Path) -> bool:
    """Renamed into place only when complete, with meta.json written last: its presence is the mark."""
    try:
        return json.loads((folder / "meta.json").read_text())["format"] == FORMAT_VERSION
    except (OSError, ValueError, KeyError):
        return False


# --- building ----------------------------------------------------------------------------------------
def _build(folder: Path, config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]], inputs: dict,
           progress: bool) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder.parent)
    tmp = folder.parent / f".{folder.name}{TMP_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        log.info("preparing the training data in %s (once; later runs reuse it)", folder)
        if tokenizers is None:
            tokenizers = train_tokenizers(*_sample(config, progress), config.tokenizer)
        (tmp / "src.model").write_bytes(tokenizers[0].model_proto)
        (tmp / "tgt.model").write_bytes(tokenizers[1].model_proto)
        meta = {**_encode_corpora(config, tokenizers, tmp, progress), "key": inputs}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process prepared the same data meanwhile: theirs is as good
            if not _complete(folder):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary folders of preparations that were killed (their process is gone)."""
    for stale in root.glob(f".*{TMP_MARK}*"):
        pid = stale.name.rsplit(TMP_MARK, 1)[-1]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def corpus_pairs(corpus: CorpusConfig, config: Config) -> Iterator[tuple[str, str]]:
    """A corpus's cleaned pairs, the first `max_pairs` of them when set."""
    pairs = cleaned(iter_pairs(corpus.path, config.data.src_lang, config.data.tgt_lang))
    return islice(pairs, config.data.max_pairs)


def _bar(description: str, progress: bool) -> tqdm:
    return tqdm(desc=description, unit=" pairs", unit_scale=True, dynamic_ncols=True, disable=not progress,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)


def _sample(config: Config, progress: bool) -> tuple[list[str], list[str]]:
    """At most `tokenizer.sample_pairs` pairs from all training corpora, drawn uniformly with the run's seed
    (reservoir sampling: one pass, memory bounded by the sample); all of them, in order, when fewer."""
    size, chooser = config.tokenizer.sample_pairs, random.Random(config.seed)
    sample: list[tuple[str, str]] = []
    seen = 0
    with _bar("sampling for SentencePiece", progress) as bar:
        for corpus in config.data.train_corpora:
            for pair in corpus_pairs(corpus, config):
                if seen < size:
                    sample.append(pair)
                else:
                    slot = chooser.randrange(seen + 1)
                    if slot < size:
                        sample[slot] = pair
                seen += 1
                bar.update()
    if not sample:
        raise UserError(f"no training pairs in {config.data.train} after cleaning")
    return [s for s, _ in sample], [t for _, t in sample]


def _encode_corpora(config: Config, tokenizers: tuple[Tokenizer, Tokenizer], folder: Path, progress: bool) -> dict:
    """Every corpus encoded into the folder's flat arrays (and its sampled copies, for subword regularisation);
    duplicates within a corpus marked; the meta."""
    dtype = id_dtype(max(t.vocab_size for t in tokenizers))
    hashes, bounds = _encode_copy(config, tokenizers, folder, 0, dtype, progress)
    for copy in range(1, config.tokenizer.sampling_copies):
        _encode_copy(config, tokenizers, folder, copy, dtype, progress)
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    unique = np.concatenate([start + np.unique(all_hashes[start:end], return_index=True)[1]
                             for start, end in zip(bounds, bounds[1:])] or [np.zeros(0, dtype=np.int64)])
    unique.sort()
    np.save(folder / "unique_rows.npy", unique.astype(np.uint32 if len(all_hashes) < 2**32 else np.int64))
    corpora = [{"path": c.path, "pairs": end - start,
                "duplicates": int(end - start - np.count_nonzero((unique >= start) & (unique < end)))}
               for c, start, end in zip(config.data.train_corpora, bounds, bounds[1:])]
    for entry in corpora:
        log.info("%s: %d pairs, %d exact duplicates removed", entry["path"], entry["pairs"], entry["duplicates"])
    return {"format": FORMAT_VERSION, "dtype": dtype.name, "bounds": bounds, "corpora": corpora,
            "copies": config.tokenizer.sampling_copies}


def _copy_name(side: str, copy: int) -> str:
    """The arrays' file stem: 'src' for the usual segmentation, 'src.2' for the second sampled one."""
    return side if copy == 0 else f"{side}.{copy}"


def _encode_copy(config: Config, tokenizers: tuple[Tokenizer, Tokenizer], folder: Path, copy: int,
                 dtype: np.dtype, progress: bool) -> tuple[list[np.ndarray], list[int]]:
    """One segmentation of every corpus (copy 0: the most probable, others sampled) into flat arrays; returns
    the pairs' hashes and where each corpus starts."""
    t = config.tokenizer
    sampling = Sampling(t.sampling_alpha, t.sampling_nbest) if copy else None
    lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    hashes: list[np.ndarray] = []
    bounds = [0]
    with open(folder / f"{_copy_name('src', copy)}.ids", "wb") as src_out, \
            open(folder / f"{_copy_name('tgt', copy)}.ids", "wb") as tgt_out, \
            _bar("encoding" if copy == 0 else f"sampling segmentation {copy}", progress) as bar:
        for corpus in config.data.train_corpora:
            chunks = in_chunks(corpus_pairs(corpus, config), CHUNK_PAIRS)
            for chunk in _encoded_chunks(chunks, tokenizers, dtype, _workers(config, corpus), sampling):
                src_out.write(chunk.src_ids.tobytes())
                tgt_out.write(chunk.tgt_ids.tobytes())
                lengths["src"].append(chunk.src_lengths)
                lengths["tgt"].append(chunk.tgt_lengths)
                hashes.append(chunk.hashes)
                bar.update(len(chunk.hashes))
                fault_point("prepare-encode")
            bounds.append(sum(len(h) for h in hashes))
    for side, parts in lengths.items():
        side_lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        offsets = np.zeros(len(side_lengths) + 1, dtype=np.int64)
        np.cumsum(side_lengths, out=offsets[1:])
        name = _copy_name(side, copy)
        np.save(folder / f"{name}.offsets.npy", offsets)
        np.save(folder / f"{name}.lengths.npy", np.minimum(side_lengths, np.iinfo(np.uint16).max).astype(np.uint16))
    return hashes, bounds


def _workers(config: Config, corpus: CorpusConfig) -> int:
    files = corpus_files(corpus.path, config.data.src_lang, config.data.tgt_lang)
    if sum(f.stat().st_size for f in files) < SMALL_CORPUS_BYTES:
        return 1
    return config.data.workers or os.cpu_count() or 1


def _encoded_chunks(chunks: Iterator[list[tuple[str, str]]], tokenizers: tuple[Tokenizer, Tokenizer],
                    dtype: np.dtype, workers: int, sampling: Optional[Sampling] = None) -> Iterator[EncodedChunk]:
    """The chunks encoded in order, by `workers` processes with at most two chunks each in flight (the
    corpus is never read further ahead than that)."""
    protos = _proto_pair(tokenizers)
    if workers <= 1:
        yield from map(ChunkEncoder(*protos, dtype, sampling), chunks)
        return
    # spawn, not fork: a forked child would inherit torch's thread pools in an undefined state
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(workers, initializer=start_worker, initargs=(*protos, dtype, sampling)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(encode_in_worker, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# --- opening -------------------------------------------------------------------------------------------
def open_prepared(folder: Path, config: Config) -> tuple[list[PairArrays], list[Part], tuple[Tokenizer, Tokenizer]]:
    """The folder's arrays (read from disk by slices; the usual segmentation first, then any sampled ones), its
    corpora as parts (rows kept by the length filter, applied to the usual segmentation), its tokenizers."""
    meta = json.loads((folder / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    copies = [PairArrays(_token_array(folder, _copy_name("src", copy), dtype),
                         _token_array(folder, _copy_name("tgt", copy), dtype)) for copy in range(meta.get("copies", 1))]
    pairs = copies[0]
    rows = _rows_kept(np.load(folder / "unique_rows.npy"), pairs, config)
    cuts = np.searchsorted(rows, meta["bounds"])  # rows are sorted: each corpus's rows are one slice (a view)
    parts = [Part(corpus.path, rows[start:end], corpus.weight)
             for corpus, start, end in zip(config.data.train_corpora, cuts, cuts[1:])]
    for part, entry in zip(parts, meta["corpora"]):
        log.info("training pairs: %s: %d read, %d kept after removing duplicates and length filtering",
                 part.name, entry["pairs"], len(part.rows))
    src_tok, tgt_tok = (Tokenizer(proto) for proto in _protos(folder))
    return copies, parts, (src_tok, tgt_tok)


def _token_array(folder: Path, side: str, dtype: np.dtype) -> TokenArray:
    ids = FileArray(folder / f"{side}.ids", dtype)
    return TokenArray(ids, FileArray.from_npy(folder / f"{side}.offsets.npy"), np.load(folder / f"{side}.lengths.npy"))


def _rows_kept(rows: np.ndarray, pairs: PairArrays, config: Config, chunk: int = 1 << 18) -> np.ndarray:
    """The rows whose sides are non-empty and at most max_length pieces, with a ratio at most
    max_length_ratio. Compacted in place, a chunk at a time, so that no second array of the corpus's size (or
    mask of it) is ever held: the kept rows end up at the front of `rows`, and a view of them is returned."""
    kept = 0
    for first in range(0, len(rows), chunk):
        part = rows[first:first + chunk]
        survivors = part[_length_ok(pairs.src.lengths[part], pairs.tgt.lengths[part], config)]  # a chunk's copy
        rows[kept:kept + len(survivors)] = survivors  # kept <= first: never overwrites an unread row
        kept += len(survivors)
    return rows[:kept]


def _length_ok(src: np.ndarray, tgt: np.ndarray, config: Config) -> np.ndarray:
    d = config.data
    src, tgt = src.astype(np.int32), tgt.astype(np.int32)
    within = (src > 0) & (tgt > 0) & (src <= d.max_length) & (tgt <= d.max_length)
    return within & (np.maximum(src, tgt) <= d.max_length_ratio * np.minimum(src, tgt))


def validation_set(spec: str, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> ValidationSet:
    """A validation corpus, cleaned and encoded (ids cut at 4 × max_length: only the loss reads them)."""
    d = config.data
    sources, references = read_parallel(spec, d.src_lang, d.tgt_lang)
    kept = list(cleaned(zip(sources, references)))[: d.max_valid_pairs]
    if not kept:
        raise UserError(f"no validation pairs in {spec}")
    sources, references = [s for s, _ in kept], [t for _, t in kept]
    limit = 4 * d.max_length
    pairs = TrainingPairs.from_lists([s[:limit] for s in src_tok.encode_batch(sources)],
                                     [t[:limit] for t in tgt_tok.encode_batch(references)],
                                     batch_tokens=config.train.batch_tokens, seed=config.seed)
    name = Path(spec).name.removesuffix(".gz").removesuffix(".tsv")
    return ValidationSet(name, pairs, sources, references)
