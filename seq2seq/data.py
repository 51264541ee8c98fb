"""Parallel corpora: read (plain, .gz, TSV), clean, filter by length, and bucket into token batches."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from seq2seq.errors import UserError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def open_text(path: str | Path, errors: str = "strict"):
    """Open a UTF-8 text file for reading, transparently un-gzipping `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors=errors)
    return open(path, encoding="utf-8", errors=errors)


def read_lines(path: str | Path) -> list[str]:
    try:
        with open_text(path) as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err.reason})") from None


def _side_file(prefix: str, lang: str) -> Path:
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise UserError(f"corpus file not found: {prefix}.{lang} (or .gz)")


def read_parallel(spec: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """Read a corpus given as a prefix (PREFIX.SRC + PREFIX.TGT) or a two-column TSV file."""
    if spec.endswith((".tsv", ".tsv.gz")):
        if not Path(spec).is_file():
            raise UserError(f"corpus file not found: {spec}")
        src, tgt = [], []
        for number, line in enumerate(read_lines(spec), 1):
            columns = line.split("\t")
            if len(columns) != 2:
                raise UserError(f"{spec}:{number}: expected 2 tab-separated columns, got {len(columns)}")
            src.append(columns[0])
            tgt.append(columns[1])
        return src, tgt
    src = read_lines(_side_file(spec, src_lang))
    tgt = read_lines(_side_file(spec, tgt_lang))
    if len(src) != len(tgt):
        raise UserError(f"{spec}: {src_lang} has {len(src)} lines but {tgt_lang} has {len(tgt)}")
    return src, tgt


def clean_pairs(src: Sequence[str], tgt: Sequence[str]) -> tuple[list[str], list[str]]:
    """Strip whitespace and drop pairs where either side is empty."""
    kept = [(s.strip(), t.strip()) for s, t in zip(src, tgt)]
    kept = [(s, t) for s, t in kept if s and t]
    return [s for s, _ in kept], [t for _, t in kept]


def keep_pair(src_len: int, tgt_len: int, max_length: int, max_ratio: float) -> bool:
    """Length filter on tokenized pairs: both sides short enough and not too different."""
    if not (0 < src_len <= max_length and 0 < tgt_len <= max_length):
        return False
    return max(src_len, tgt_len) / min(src_len, tgt_len) <= max_ratio


@dataclass
class Batch:
    """A padded batch. src: (B, S), src_lengths: (B,), tgt_in/tgt_out: (B, T) with BOS-shifted input."""

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor

    @property
    def num_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)))


def pad_sequences(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> Batch:
    """Pad id lists into a Batch: source ends with EOS, target input starts with BOS."""
    src = pad_sequences([list(s) + [EOS] for s in src_ids])
    lengths = torch.tensor([len(s) + 1 for s in src_ids], dtype=torch.long)
    tgt_in = pad_sequences([[BOS] + list(t) for t in tgt_ids])
    tgt_out = pad_sequences([list(t) + [EOS] for t in tgt_ids])
    return Batch(src, lengths, tgt_in, tgt_out)


def token_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], batch_tokens: int, generator: torch.Generator | None
) -> list[list[int]]:
    """Group example indices into batches of at most `batch_tokens` padded tokens on either side.

    Examples are sorted by length (randomly within equal lengths when a generator is given), so each
    batch holds similar lengths and little padding; the batch order is then shuffled.
    """
    n = len(src_lengths)
    tie_break = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    order = sorted(range(n), key=lambda i: (tgt_lengths[i], src_lengths[i], tie_break[i]))
    batches, current, longest_src, longest_tgt = [], [], 0, 0
    for i in order:
        s, t = src_lengths[i] + 1, tgt_lengths[i] + 1  # +1 for EOS / BOS
        new_src, new_tgt = max(longest_src, s), max(longest_tgt, t)
        if current and max(new_src, new_tgt) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, new_src, new_tgt = [], s, t
        current.append(i)
        longest_src, longest_tgt = new_src, new_tgt
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


class ParallelDataset:
    """Tokenized training pairs with deterministic, seed-driven epoch batching (resumable mid-epoch)."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_tokens: int, seed: int):
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.batch_tokens, self.seed = batch_tokens, seed

    def __len__(self) -> int:
        return len(self.src_ids)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batch order of one epoch: a pure function of (seed, epoch), so resuming replays it."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return token_batches([len(s) for s in self.src_ids], [len(t) for t in self.tgt_ids], self.batch_tokens, generator)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """Yield (index in epoch, batch), skipping the first `start` batches (for resume)."""
        for index, indices in enumerate(self.epoch_batches(epoch)):
            if index >= start:
                yield index, collate([self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices])

    def iterate_steps(self, epoch: int, start: int = 0, accumulate: int = 1, rank: int = 0,
                      world_size: int = 1) -> Iterator[tuple[int, list[Batch]]]:
        """Yield (position in epoch after the step, this rank's micro-batches) for one optimizer step each.

        A step takes the next `accumulate × world_size` batches of the epoch's order; rank r takes every
        world_size-th of them, starting at the r-th. Every rank computes the same order, so the ranks stay
        in lockstep, and a shorter tail is dropped so they all take the same number of steps. With one
        rank and no accumulation this is `iterate` one batch at a time.
        """
        order = self.epoch_batches(epoch)
        group = accumulate * world_size
        for first in range(start, len(order) - group + 1, group):
            mine = order[first + rank: first + group: world_size]
            yield first + group, [collate([self.src_ids[i] for i in ix], [self.tgt_ids[i] for i in ix]) for ix in mine]

    def ordered_batches(self) -> Iterator[Batch]:
        """Unshuffled batches for validation loss."""
        lengths = ([len(s) for s in self.src_ids], [len(t) for t in self.tgt_ids])
        for indices in token_batches(*lengths, self.batch_tokens, None):
            yield collate([self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices])
