import gzip
from pathlib import Path

import numpy as np
import pytest

from seq2seq.batching import PairArrays, TrainingPairs, collate, id_dtype, token_batches
from seq2seq.corpus import clean_pairs, read_parallel
from seq2seq.errors import UserError
from seq2seq.tokenizer import BOS, EOS, PAD


def test_reads_plain_gz_and_tsv(tmp_path: Path):
    (tmp_path / "c.de").write_text("Hallo Welt\nGuten Tag\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.en.gz", "wt", encoding="utf-8") as f:
        f.write("Hello world\nGood day\n")
    (tmp_path / "c.tsv").write_text("Hallo Welt\tHello world\nGuten Tag\tGood day\n", encoding="utf-8")
    expected = (["Hallo Welt", "Guten Tag"], ["Hello world", "Good day"])
    assert read_parallel(str(tmp_path / "c"), "de", "en") == expected
    assert read_parallel(str(tmp_path / "c.tsv"), "de", "en") == expected


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


def test_collate_shapes_and_shift():
    batch = collate([[10, 11], [12]], [[20, 21, 22], [23]])
    assert batch.src.tolist() == [[10, 11, EOS], [12, EOS, PAD]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS, 20, 21, 22], [BOS, 23, PAD, PAD]]
    assert batch.tgt_out.tolist() == [[20, 21, 22, EOS], [23, EOS, PAD, PAD]]
    assert batch.num_tgt_tokens == 6


def _random_lengths(n=500, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 40, n), rng.integers(1, 40, n)


def test_token_batches_cover_everything_within_budget_with_little_padding():
    src, tgt = _random_lengths()
    batches = token_batches(src, tgt, 400, np.random.default_rng(1))
    assert sorted(int(i) for b in batches for i in b) == list(range(500))
    padded = 0
    for b in batches:
        longest = int(np.maximum(src[b], tgt[b]).max()) + 1
        assert longest * len(b) <= 400 or len(b) == 1
        padded += longest * len(b)
    assert padded <= 1.1 * len(batches) * 400  # greedy: every batch but the last of its width is nearly full
    assert [b.tolist() for b in token_batches(src, tgt, 400)] == [b.tolist() for b in token_batches(src, tgt, 400)]


def _same_batches(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_epoch_order_is_deterministic_and_varies_by_epoch_and_seed():
    src, tgt = _random_lengths()
    src_ids, tgt_ids = [[5] * n for n in src], [[6] * n for n in tgt]
    data = TrainingPairs.from_lists(src_ids, tgt_ids, batch_tokens=400, seed=3)
    again = TrainingPairs.from_lists(src_ids, tgt_ids, batch_tokens=400, seed=3)
    assert _same_batches(data.epoch_batches(0), again.epoch_batches(0))
    assert not _same_batches(data.epoch_batches(0), data.epoch_batches(1))
    other_seed = TrainingPairs.from_lists(src_ids, tgt_ids, batch_tokens=400, seed=4)
    assert not _same_batches(other_seed.epoch_batches(0), data.epoch_batches(0))
    resumed = [position for position, _ in data.iterate_steps(0, start=3)]
    assert resumed[0] == 4 and len(resumed) == len(data.epoch_batches(0)) - 3


def test_array_batches_equal_list_collation():
    src, tgt = [[7, 8, 9], [10], [11, 12]], [[20], [21, 22, 23, 24], [25, 26]]
    pairs = PairArrays.from_lists(src, tgt)
    rows = np.array([2, 0])
    from_arrays, from_lists = pairs.batch(rows), collate([src[2], src[0]], [tgt[2], tgt[0]])
    for name in ("src", "src_lengths", "tgt_in", "tgt_out"):
        assert getattr(from_arrays, name).tolist() == getattr(from_lists, name).tolist()


def test_ids_take_the_smallest_type_that_holds_the_vocabulary():
    assert id_dtype(8000) == np.uint16 and id_dtype(65536) == np.uint16 and id_dtype(65537) == np.uint32


def test_equal_source_batches_hold_one_source_length_each_and_still_fill_the_budget():
    src, tgt = _random_lengths(2000)
    batches = token_batches(src, tgt, 400, np.random.default_rng(1), equal_source=True)
    assert sorted(int(i) for b in batches for i in b) == list(range(2000))
    assert all(len(set(src[b].tolist())) == 1 for b in batches)
    widths = [int(np.maximum(src[b], tgt[b]).max()) + 1 for b in batches]
    assert all(w * len(b) <= 400 or len(b) == 1 for w, b in zip(widths, batches))
    mixed = token_batches(src, tgt, 400, np.random.default_rng(1))
    assert len(batches) <= len(mixed) + len(set(src.tolist()))  # at most one part-filled batch per length more
