"""Token batches: id sequences stored flat (read from prepared data on disk, or in memory), grouped into
batches of similar length with vectorised numpy, and collated into padded tensors.

An epoch's order is a pure function of (seed, epoch), so a resumed run replays it exactly; with several
corpora each epoch draws from every corpus in proportion to its weight.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union, overload

import numpy as np
import torch

from seq2seq.tokenizer import BOS, EOS, PAD


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
        tensors = (self.src, self.src_lengths, self.tgt_in, self.tgt_out)
        return Batch(*(t.to(device, non_blocking=True) for t in tensors))


def _padded(seqs: Sequence[Sequence[int] | np.ndarray], first: Optional[int], last: Optional[int]) -> torch.Tensor:
    """(B, longest + added) int64, each row `first`? + seq + `last`? then PAD."""
    added = (first is not None) + (last is not None)
    lengths = [len(s) for s in seqs]
    out = np.full((len(seqs), max(lengths) + added), PAD, dtype=np.int64)
    start = 1 if first is not None else 0
    for row, (seq, length) in enumerate(zip(seqs, lengths)):
        if first is not None:
            out[row, 0] = first
        out[row, start:start + length] = seq
        if last is not None:
            out[row, start + length] = last
    return torch.from_numpy(out)


def collate(src_ids: Sequence[Sequence[int] | np.ndarray], tgt_ids: Sequence[Sequence[int] | np.ndarray]) -> Batch:
    """Pad id sequences into a Batch: source ends with EOS, target input starts with BOS."""
    lengths = torch.tensor([len(s) + 1 for s in src_ids], dtype=torch.long)
    return Batch(_padded(src_ids, None, EOS), lengths, _padded(tgt_ids, BOS, None), _padded(tgt_ids, None, EOS))


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class FileArray:
    """A 1-D array in a file, read by slices with pread.

    Not a memory map on purpose: every page a process maps counts in its resident memory, and where the page
    cache holds a file in folios of up to 2 MB (ext4 on recent kernels) one mapped row brought up to 2 MB with
    it, so a memory-mapped corpus grew the resident set towards the corpus's size as training read random rows.
    Read with pread, the same pages stay in the page cache (shared, reclaimable) and out of the process.
    """

    def __init__(self, path: Path, dtype: np.dtype, header_bytes: int = 0):
        self.path, self.dtype, self.header_bytes = Path(path), np.dtype(dtype), header_bytes
        self._length = (self.path.stat().st_size - header_bytes) // self.dtype.itemsize
        self._fd: Optional[int] = None
        self._pid = -1

    @classmethod
    def from_npy(cls, path: Path) -> "FileArray":
        """A 1-D .npy file, read past its header."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format
            read_header = header.read_array_header_1_0 if version == (1, 0) else header.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            if len(shape) != 1 or fortran_order:
                raise ValueError(f"{path}: expected a 1-D array, found shape {shape}")
            return cls(path, dtype, header_bytes=f.tell())

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(self._length)
        if step != 1:
            raise IndexError("FileArray reads contiguous slices only")
        count = max(0, stop - start)
        data = os.pread(self._file(), count * self.dtype.itemsize, self.header_bytes + start * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype, count=count)

    def _file(self) -> int:
        if self._pid != os.getpid():  # opened per process: a forked child must not share the parent's descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        assert self._fd is not None
        return self._fd

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


Flat = Union[np.ndarray, FileArray]


@dataclass
class TokenArray:
    """Sequences stored flat: `ids` holds them end to end, sequence i is ids[offsets[i]:offsets[i + 1]]."""

    ids: Flat  # (tokens,) uint16 or uint32, in memory or in a file
    offsets: Flat  # (n + 1,) int64
    lengths: np.ndarray  # (n,) in memory: batching reads the lengths of every pair, collation a batch's offsets

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], dtype: np.dtype = np.dtype(np.uint32)) -> "TokenArray":
        lengths = np.array([len(s) for s in seqs], dtype=np.int32)
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for s in seqs for i in s), dtype=dtype, count=int(offsets[-1]))
        return cls(ids, offsets, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, row: int) -> np.ndarray:
        start, end = self.offsets[row:row + 2]
        return self.ids[int(start):int(end)]


@dataclass
class PairArrays:
    """Parallel sequences: pair i is (src[i], tgt[i])."""

    src: TokenArray
    tgt: TokenArray

    @classmethod
    def from_lists(cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> "PairArrays":
        return cls(TokenArray.from_lists(src_ids), TokenArray.from_lists(tgt_ids))

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, rows: np.ndarray) -> Batch:
        return collate([self.src[int(r)] for r in rows], [self.tgt[int(r)] for r in rows])


def token_batches(src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int,
                  rng: Optional[np.random.Generator] = None, equal_source: bool = False) -> list[np.ndarray]:
    """Positions 0..n-1 grouped into batches of at most `batch_tokens` padded tokens on either side.

    Pairs are sorted by padded width (the longer side + 1), then target length, then at random (by position
    without `rng`), and cut greedily into runs whose width × count stays within the budget, so each batch
    holds similar lengths and little padding. With `equal_source` they are sorted by source length first and
    a batch never spans two source lengths. With `rng` the batch order is shuffled. The sort is numpy's;
    the Python loop runs once per batch and per distinct width, never per pair.
    """
    order, starts = sorted_cuts(src_lengths, tgt_lengths, batch_tokens, rng, equal_source)
    return list(BatchOrder(order, starts, rng.permutation(len(starts) - 1) if rng is not None else None))


def sorted_cuts(src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int,
                rng: Optional[np.random.Generator] = None, equal_source: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """token_batches' batches unshuffled and flat: the positions in sorted order (n,), and where each batch
    starts in it, with n at the end (batches + 1,)."""
    n = len(src_lengths)
    if n == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(1, dtype=np.int64)
    # One bucket per width (or per source length), each sorted on its own: the temporaries are a bucket's,
    # never the corpus's (a global multi-key sort holds several arrays of 8 bytes per pair at once).
    bucket_key = src_lengths if equal_source else np.maximum(src_lengths, tgt_lengths)
    order = np.empty(n, dtype=np.uint32 if n < 2**32 else np.int64)
    groups: list[_WidthGroup] = []
    filled = 0
    for key in np.flatnonzero(np.bincount(bucket_key)).tolist():
        members = np.flatnonzero(bucket_key == key)
        targets = tgt_lengths[members]
        keys = (rng.random(len(members), dtype=np.float32), targets) if rng is not None else (targets,)
        members = members[np.lexsort(keys)]  # by target length, then random: widths ascend within the bucket
        order[filled:filled + len(members)] = members
        groups += _source_groups(src_lengths[members], tgt_lengths[members], filled) if equal_source \
            else [_WidthGroup(filled, key + 1)]  # + 1 for EOS / BOS
        filled += len(members)
    del bucket_key
    return order, np.array(_greedy_cuts(groups, n, batch_tokens) + [n], dtype=np.int64)


class BatchOrder(Sequence[np.ndarray]):
    """An epoch's batches, in the order they train, as views into one flat array of rows.

    Not a list of arrays: at millions of pairs one array object per batch (a hundred bytes or so, for a
    batch of a few dozen pairs) cost about as much memory as the rows themselves."""

    def __init__(self, rows: np.ndarray, starts: np.ndarray, order: Optional[np.ndarray] = None):
        self.rows, self.starts = rows, starts  # rows (n,) batch after batch; starts (batches + 1,)
        self.order = order  # (batches,) which batch trains i-th; None: as stored

    def __len__(self) -> int:
        return len(self.starts) - 1

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        batch = int(self.order[index]) if self.order is not None else index % len(self)
        return self.rows[self.starts[batch]:self.starts[batch + 1]]


@dataclass
class _WidthGroup:
    """Pairs of one padded width, consecutive in sorted order from `start`; `opens_batch`: none joins earlier ones."""

    start: int
    width: int
    opens_batch: bool = False


def _source_groups(src_lengths: np.ndarray, tgt_lengths: np.ndarray, start: int) -> list[_WidthGroup]:
    """The width groups of one source length's bucket (sorted by target length) from `start`; the first
    opens a batch, so that no batch spans two source lengths."""
    widths = np.maximum(src_lengths, tgt_lengths) + 1  # + 1 for EOS / BOS
    width_starts = np.flatnonzero(np.diff(widths, prepend=-1))
    return [_WidthGroup(start + int(first), int(widths[first]), opens_batch=i == 0)
            for i, first in enumerate(width_starts)]


def _greedy_cuts(groups: list[_WidthGroup], n: int, batch_tokens: int) -> list[int]:
    """Where batches start in sorted order: a batch grows while its width (its last pair's) times its size fits
    the budget, across groups of ascending width, as a pair-by-pair greedy cut would."""
    cuts = [0] if n else []
    ends = [group.start for group in groups[1:]] + [n]
    for group, end in zip(groups, ends):
        size = max(1, batch_tokens // group.width)
        if group.start > cuts[-1] and (group.opens_batch or group.start - cuts[-1] >= size):
            cuts.append(group.start)  # the open batch, of narrower pairs, has no room at this width
        cuts += range(cuts[-1] + size, end, size)
    return cuts


@dataclass
class Part:
    """One training corpus within the prepared pairs: its rows, and its sampling weight (None: its size)."""

    name: str
    rows: np.ndarray  # rows of PairArrays
    weight: Optional[float] = None


class TrainingPairs:
    """Seed-driven epochs of token batches over one or several corpora (resumable mid-epoch).

    With `sampled` segmentations of the same pairs (subword regularisation, prepared once), epoch e reads
    segmentation e mod (1 + len(sampled)), the usual one first; validation always reads the usual one.

    An epoch holds as many pairs as all corpora together. Without weights that is every pair once;
    with weights corpus i gives weight_i / sum(weights) of them, drawn without repetition up to its size,
    then repeated (each repetition a new permutation), so a small in-domain corpus can be oversampled."""

    def __init__(self, pairs: PairArrays, parts: Sequence[Part], *, batch_tokens: int, seed: int,
                 sampled: Sequence[PairArrays] = (), equal_source: bool = False):
        weighted = [p.weight is not None for p in parts]
        if any(weighted) and not all(weighted):
            raise ValueError("give a weight to every training corpus, or to none")
        self.parts = list(parts)
        self.segmentations = [pairs, *sampled]  # epoch e trains on segmentation e mod their number
        self.batch_tokens, self.seed, self.equal_source = batch_tokens, seed, equal_source
        self._cached: tuple[int, BatchOrder] = (-1, BatchOrder(np.zeros(0, np.uint32), np.zeros(1, np.int64)))

    @classmethod
    def from_lists(cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], *, batch_tokens: int,
                   seed: int, equal_source: bool = False) -> "TrainingPairs":
        """In memory, one corpus: for tests and small data."""
        pairs = PairArrays.from_lists(src_ids, tgt_ids)
        return cls(pairs, [Part("train", np.arange(len(pairs)))], batch_tokens=batch_tokens, seed=seed,
                   equal_source=equal_source)

    def __len__(self) -> int:
        return sum(len(part.rows) for part in self.parts)

    @property
    def pairs(self) -> PairArrays:
        """The usual segmentation (validation's, and every epoch's without sampling)."""
        return self.segmentations[0]

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def epoch_rows(self, epoch: int, rng: np.random.Generator) -> np.ndarray:
        """The rows one epoch trains on (unordered): every row, or each corpus's weighted share."""
        weights = [part.weight for part in self.parts if part.weight is not None]  # all or none (see __init__)
        if not weights:
            return self.parts[0].rows if len(self.parts) == 1 else np.concatenate([part.rows for part in self.parts])
        shares = np.array(weights) / sum(weights) * len(self)
        counts = np.floor(shares).astype(np.int64)
        counts[np.argsort(counts - shares)[: len(self) - counts.sum()]] += 1  # largest remainders: the sum is exact
        return np.concatenate([self._draw(part.rows, int(n), rng) for part, n in zip(self.parts, counts)])

    @staticmethod
    def _draw(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        repeats, rest = divmod(count, len(rows))
        whole = [rows[rng.permutation(len(rows))] for _ in range(repeats)]
        return np.concatenate(whole + [rows[rng.permutation(len(rows))[:rest]]])

    def epoch_pairs(self, epoch: int) -> PairArrays:
        """The segmentation an epoch trains on."""
        return self.segmentations[epoch % len(self.segmentations)]

    def epoch_batches(self, epoch: int) -> BatchOrder:
        """The batch order of one epoch (rows of `pairs` per batch): a pure function of (seed, epoch)."""
        if self._cached[0] != epoch:
            rng = self._rng(epoch)
            rows = self.epoch_rows(epoch, rng)
            pairs = self.epoch_pairs(epoch)
            positions, starts = sorted_cuts(pairs.src.lengths[rows], pairs.tgt.lengths[rows], self.batch_tokens, rng,
                                            self.equal_source)
            self._cached = (epoch, BatchOrder(rows[positions], starts, rng.permutation(len(starts) - 1)))
        return self._cached[1]

    def iterate_steps(self, epoch: int, start: int = 0, accumulate: int = 1, rank: int = 0,
                      world_size: int = 1) -> Iterator[tuple[int, list[Batch]]]:
        """Yield (position in epoch after the step, this rank's micro-batches) for one optimizer step each.

        A step takes the next `accumulate × world_size` batches of the epoch's order; rank r takes every
        world_size-th of them, starting at the r-th. Every rank computes the same order, so the ranks stay
        in lockstep, and a shorter tail is dropped so they all take the same number of steps.
        """
        order, pairs = self.epoch_batches(epoch), self.epoch_pairs(epoch)
        group = accumulate * world_size
        for first in range(start, len(order) - group + 1, group):
            yield first + group, [pairs.batch(rows) for rows in order[first + rank: first + group: world_size]]

    def ordered_batches(self) -> Iterator[Batch]:
        """Every pair once, unshuffled: for validation loss."""
        rows = np.concatenate([part.rows for part in self.parts])
        for positions in token_batches(self.pairs.src.lengths[rows], self.pairs.tgt.lengths[rows], self.batch_tokens):
            yield self.pairs.batch(rows[positions])


def prefetched(items: Iterator, depth: int) -> Iterator:
    """`items` produced by a background thread up to `depth` ahead (collation overlaps the training step);
    `depth` 0 produces them in the caller. An exception in the producer is raised in the consumer."""
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put((item, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            ready.put((None, err))
        ready.put((done, None))

    thread = threading.Thread(target=produce, name="batches", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
