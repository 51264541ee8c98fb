import gzip
from pathlib import Path

import pytest
import torch

from seq2seq.data import (BOS, EOS, PAD, ParallelDataset, clean_pairs, collate, keep_pair, read_parallel,
                          token_batches)
from seq2seq.errors import UserError


def test_reads_plain_gz_and_tsv(tmp_path: Path):
    (tmp_path / "c.de").write_text("Hallo Welt\nGuten Tag\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.en.gz", "wt", encoding="utf-8") as f:
        f.write("Hello world\nGood day\n")
    (tmp_path / "c.tsv").write_text("Hallo Welt\tHello world\nGuten Tag\tGood day\n", encoding="utf-8")
    assert read_parallel(str(tmp_path / "c"), "de", "en") == (["Hallo Welt", "Guten Tag"], ["Hello world", "Good day"])
    assert read_parallel(str(tmp_path / "c.tsv"), "de", "en") == (["Hallo Welt", "Guten Tag"], ["Hello world", "Good day"])


def test_mismatched_and_missing_files_are_user_errors(tmp_path: Path):
    (tmp_path / "c.de").write_text("a\nb\n")
    (tmp_path / "c.en").write_text("a\n")
    with pytest.raises(UserError, match="2 lines but en has 1"):
        read_parallel(str(tmp_path / "c"), "de", "en")
    with pytest.raises(UserError, match="not found"):
        read_parallel(str(tmp_path / "missing"), "de", "en")
    (tmp_path / "bad.tsv").write_text("only one column\n")
    with pytest.raises(UserError, match="bad.tsv:1"):
        read_parallel(str(tmp_path / "bad.tsv"), "de", "en")


def test_cleaning_strips_and_drops_empty():
    assert clean_pairs(["  a ", "", "c", "d"], ["x", "y", "  ", " w"]) == (["a", "d"], ["x", "w"])


def test_length_filter():
    assert keep_pair(5, 6, max_length=10, max_ratio=2.0)
    assert not keep_pair(11, 6, max_length=10, max_ratio=2.0)
    assert not keep_pair(2, 7, max_length=10, max_ratio=3.0)
    assert not keep_pair(0, 3, max_length=10, max_ratio=3.0)


def test_collate_shapes_and_shift():
    batch = collate([[10, 11], [12]], [[20, 21, 22], [23]])
    assert batch.src.tolist() == [[10, 11, EOS], [12, EOS, PAD]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS, 20, 21, 22], [BOS, 23, PAD, PAD]]
    assert batch.tgt_out.tolist() == [[20, 21, 22, EOS], [23, EOS, PAD, PAD]]
    assert batch.num_tgt_tokens == 6


def _random_lengths(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 40, (n,), generator=g).tolist(), torch.randint(1, 40, (n,), generator=g).tolist()


def test_token_batches_cover_everything_within_budget():
    src, tgt = _random_lengths()
    batches = token_batches(src, tgt, 400, torch.Generator().manual_seed(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        longest = max(max(src[i], tgt[i]) + 1 for i in b)
        assert longest * len(b) <= 400 or len(b) == 1


def test_epoch_order_is_deterministic_and_varies_by_epoch():
    src, tgt = _random_lengths()
    data = ParallelDataset([[5] * n for n in src], [[6] * n for n in tgt], 400, seed=3)
    assert data.epoch_batches(0) == data.epoch_batches(0)
    assert data.epoch_batches(0) != data.epoch_batches(1)
    other_seed = ParallelDataset(data.src_ids, data.tgt_ids, 400, seed=4)
    assert other_seed.epoch_batches(0) != data.epoch_batches(0)
    resumed = [i for i, _ in data.iterate(0, start=3)]
    assert resumed[0] == 3 and len(resumed) == len(data.epoch_batches(0)) - 3
