"""Parallel corpora on disk: read (plain, .gz, TSV) as streams of pairs, cleaned, and fingerprinted so that
prepared data knows when its corpus changed."""
from __future__ import annotations

import gzip
import hashlib
import os
from itertools import islice, zip_longest
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence, TypeVar

from seq2seq.errors import UserError

T = TypeVar("T")

SAMPLE_BYTES = 1 << 20  # a fingerprint hashes this much at the start, the middle and the end of a file


def open_text(path: str | Path, errors: str = "strict") -> IO[str]:
    """Open a UTF-8 text file for reading, transparently un-gzipping `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors=errors)
    return open(path, encoding="utf-8", errors=errors)


def read_lines(path: str | Path) -> list[str]:
    return list(iter_lines(path))


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a text file without their newlines; a UserError if it is not UTF-8 or not gzip."""
    try:
        with open_text(path) as f:
            for line in f:
                yield line.rstrip("\n")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err.reason})") from None
    except (OSError, EOFError) as err:  # a truncated or damaged .gz
        raise UserError(f"cannot read {path}: {err}") from None


def is_tsv(spec: str) -> bool:
    return spec.endswith((".tsv", ".tsv.gz"))


def corpus_files(spec: str, src_lang: str, tgt_lang: str) -> list[Path]:
    """The files a corpus names: a two-column TSV file, or PREFIX.SRC[.gz] and PREFIX.TGT[.gz]."""
    if is_tsv(spec):
        if not Path(spec).is_file():
            raise UserError(f"corpus file not found: {spec}")
        return [Path(spec)]
    return [_side_file(spec, src_lang), _side_file(spec, tgt_lang)]


def _side_file(prefix: str, lang: str) -> Path:
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise UserError(f"corpus file not found: {prefix}.{lang} (or .gz)")


def iter_pairs(spec: str, src_lang: str, tgt_lang: str) -> Iterator[tuple[str, str]]:
    """The corpus's (source, target) lines as they are, one pair at a time, in constant memory."""
    files = corpus_files(spec, src_lang, tgt_lang)
    if len(files) == 1:
        for number, line in enumerate(iter_lines(files[0]), 1):
            columns = line.split("\t")
            if len(columns) != 2:
                raise UserError(f"{spec}:{number}: expected 2 tab-separated columns, got {len(columns)}")
            yield columns[0], columns[1]
        return
    sources, targets = iter_lines(files[0]), iter_lines(files[1])
    count = 0
    for src, tgt in zip_longest(sources, targets):
        if src is None or tgt is None:  # one side ended first: count the other's rest, for the message
            rest = 1 + sum(1 for _ in (targets if src is None else sources))
            src_count, tgt_count = (count, count + rest) if src is None else (count + rest, count)
            raise UserError(f"{spec}: {src_lang} has {src_count} lines but {tgt_lang} has {tgt_count}")
        count += 1
        yield src, tgt


def read_parallel(spec: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """A whole (small) corpus in memory, as two lists."""
    src, tgt = [], []
    for s, t in iter_pairs(spec, src_lang, tgt_lang):
        src.append(s)
        tgt.append(t)
    return src, tgt


def cleaned(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Pairs with surrounding whitespace stripped; pairs where either side is empty dropped."""
    for src, tgt in pairs:
        src, tgt = src.strip(), tgt.strip()
        if src and tgt:
            yield src, tgt


def clean_pairs(src: Sequence[str], tgt: Sequence[str]) -> tuple[list[str], list[str]]:
    kept = list(cleaned(zip(src, tgt, strict=True)))  # two lists from any caller: unequal ones are an error
    return [s for s, _ in kept], [t for _, t in kept]


def fingerprint(path: Path) -> dict:
    """What identifies a file's content cheaply: its size, modification time, and a hash of three samples."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for position in (0, max(0, stat.st_size // 2 - SAMPLE_BYTES // 2), max(0, stat.st_size - SAMPLE_BYTES)):
            f.seek(position)
            digest.update(f.read(SAMPLE_BYTES))
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sample_blake2b": digest.hexdigest()}


def in_chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """`items` as lists of `size` (the last may be shorter), read only as far as the current one."""
    while chunk := list(islice(items, size)):
        yield chunk
