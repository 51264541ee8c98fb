"""Prepared training data: made once and reused, prepared again when the corpus or a setting changes, never
left half-made by a kill, weighted corpora drawn in proportion, and the same batches as in memory."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seq2seq.batching import TrainingPairs
from seq2seq.config import load_config
from seq2seq.corpus import cleaned, read_parallel
from seq2seq.prepare import prepare_data, prepared_folder
from tests.conftest import MULTI30K, REPO, data_overrides, run_cli


def _corpus(folder: Path, pairs: int, name: str = "c", skip: int = 0) -> str:
    """A copy of Multi30k training pairs [skip, skip + pairs) as PREFIX.de / PREFIX.en; returns PREFIX."""
    src, tgt = read_parallel(str(MULTI30K / "train"), "de", "en")
    (folder / f"{name}.de").write_text("\n".join(src[skip:skip + pairs]) + "\n", encoding="utf-8")
    (folder / f"{name}.en").write_text("\n".join(tgt[skip:skip + pairs]) + "\n", encoding="utf-8")
    return str(folder / name)


def _config(tmp_path: Path, *sets: str):
    base = [*data_overrides(), f"data.prepared_dir={tmp_path / 'prepared'}", "tokenizer.vocab_size=300"]
    return load_config(REPO / "configs/tiny.yaml", [*base, *sets])


def _complete_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


def test_preparing_twice_reuses_the_first(tmp_path):
    config = _config(tmp_path, f"data.train={_corpus(tmp_path, 600)}")
    first = prepare_data(config, progress=False)
    written = {p.name: p.stat().st_mtime_ns for p in first.folder.iterdir()}
    second = prepare_data(config, progress=False)
    assert second.folder == first.folder and _complete_folders(tmp_path / "prepared") == [first.folder]
    assert {p.name: p.stat().st_mtime_ns for p in second.folder.iterdir()} == written  # nothing rewritten
    assert second.src_tokenizer.model_proto == first.src_tokenizer.model_proto
    # a length limit is applied when opening, so changing it reuses the folder too
    shorter = prepare_data(_config(tmp_path, f"data.train={config.data.train}", "data.max_length=10"), progress=False)
    assert shorter.folder == first.folder and len(shorter.train) < len(first.train)


def test_a_changed_corpus_or_tokenizer_setting_prepares_again(tmp_path):
    prefix = _corpus(tmp_path, 600)
    config = _config(tmp_path, f"data.train={prefix}")
    first = prepare_data(config, progress=False).folder
    with open(f"{prefix}.en", "a", encoding="utf-8") as f:  # one more pair: size, time and content change
        f.write("A dog.\n")
    with open(f"{prefix}.de", "a", encoding="utf-8") as f:
        f.write("Ein Hund.\n")
    changed = prepare_data(config, progress=False)
    assert changed.folder != first and len(changed.train) == len(prepare_data(config, progress=False).train)
    other_vocab = prepare_data(_config(tmp_path, f"data.train={prefix}", "tokenizer.vocab_size=250"), progress=False)
    assert other_vocab.folder not in (first, changed.folder)


def test_duplicates_and_empty_pairs_are_removed(tmp_path):
    (tmp_path / "d.de").write_text("Ein Hund.\nEine Katze.\nEin Hund.\n  \nEin Hund.\n", encoding="utf-8")
    (tmp_path / "d.en").write_text("A dog.\nA cat.\nA dog.\nnothing\nThe dog.\n", encoding="utf-8")
    config = _config(tmp_path, f"data.train={tmp_path / 'd'}", "tokenizer.vocab_size=40")
    data = prepare_data(config, progress=False)
    rows = data.train.parts[0].rows
    texts = [(data.src_tokenizer.decode(data.train.pairs.src[r]), data.tgt_tokenizer.decode(data.train.pairs.tgt[r]))
             for r in rows]
    assert texts == [("Ein Hund.", "A dog."), ("Eine Katze.", "A cat."), ("Ein Hund.", "The dog.")]


def test_a_kill_while_preparing_leaves_nothing_that_passes_for_prepared(tmp_path):
    prefix = _corpus(tmp_path, 25_000)  # three encoding chunks; killed after the second
    sets = [x for o in [*data_overrides(), f"data.train={prefix}", f"data.prepared_dir={tmp_path / 'prepared'}",
                        "tokenizer.vocab_size=300", "data.max_pairs=null"] for x in ("--set", o)]
    killed = subprocess.run([sys.executable, "-m", "seq2seq", "prepare", "configs/tiny.yaml", *sets], cwd=REPO,
                            env={**os.environ, "SEQ2SEQ_KILL_AT": "prepare-encode:2"}, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    root = tmp_path / "prepared"
    assert _complete_folders(root) == [] and any(p.name.startswith(".") for p in root.iterdir())  # only the temporary
    done = run_cli("prepare", "configs/tiny.yaml", *sets)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in root.iterdir()] == [_complete_folders(root)[0].name]  # the stale temporary is gone
    assert "prepared:" in done.stdout and "25000 read" in done.stderr  # the whole corpus


def test_batches_read_from_disk_equal_the_in_memory_ones(tmp_path):
    """Prepared (workers, files read by slices) against the pairs cleaned, encoded and filtered here in Python."""
    config = _config(tmp_path, f"data.train={_corpus(tmp_path, 3000)}", "data.workers=2", "data.max_length=30")
    data = prepare_data(config, progress=False)
    src, tgt = zip(*cleaned(zip(*read_parallel(config.data.train, "de", "en"))))
    src_ids, tgt_ids = data.src_tokenizer.encode_batch(list(src)), data.tgt_tokenizer.encode_batch(list(tgt))
    kept = [i for i in range(len(src)) if 0 < len(src_ids[i]) <= 30 and 0 < len(tgt_ids[i]) <= 30
            and max(len(src_ids[i]), len(tgt_ids[i])) <= 3 * min(len(src_ids[i]), len(tgt_ids[i]))]
    in_memory = TrainingPairs.from_lists([src_ids[i] for i in kept], [tgt_ids[i] for i in kept],
                                         batch_tokens=config.train.batch_tokens, seed=config.seed)
    assert len(data.train) == len(in_memory)  # Multi30k's first 3000 pairs hold no exact duplicates
    for epoch in (0, 1):
        mapped = [batch for _, step in data.train.iterate_steps(epoch) for batch in step]
        listed = [batch for _, step in in_memory.iterate_steps(epoch) for batch in step]
        assert len(mapped) == len(listed)
        for a, b in zip(mapped, listed):
            assert a.src.equal(b.src) and a.tgt_in.equal(b.tgt_in) and a.tgt_out.equal(b.tgt_out)
            assert a.src_lengths.equal(b.src_lengths)
    mapped_files = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    assert str(data.folder) not in mapped_files  # read, never mapped: the corpus stays out of resident memory


def test_weighted_corpora_are_drawn_in_their_proportions(tmp_path):
    general, in_domain = _corpus(tmp_path, 2000, "general"), _corpus(tmp_path, 200, "domain", skip=5000)
    config = _config(tmp_path, f"data.train=[{{path: {general}, weight: 1}}, {{path: {in_domain}, weight: 1}}]")
    data = prepare_data(config, progress=False)
    general_rows = set(data.train.parts[0].rows.tolist())
    sizes = [len(part.rows) for part in data.train.parts]
    for epoch in (0, 1):
        rows = np.concatenate(data.train.epoch_batches(epoch))
        from_general = sum(int(r) in general_rows for r in rows)
        assert len(rows) == sum(sizes) and abs(from_general / len(rows) - 0.5) < 0.01  # half each, as weighted
        domain_rows = [int(r) for r in rows if int(r) not in general_rows]
        assert len(set(domain_rows)) == sizes[1]  # the small corpus oversampled: every pair drawn, several times
    unweighted = prepare_data(_config(tmp_path, f"data.train=[{general}, {in_domain}]"), progress=False)
    rows = np.concatenate(unweighted.train.epoch_batches(0))
    assert sorted(rows.tolist()) == sorted(np.concatenate([p.rows for p in unweighted.train.parts]).tolist())


def test_a_single_tsv_path_still_works_through_set(tmp_path):
    src, tgt = read_parallel(str(MULTI30K / "train"), "de", "en")
    with gzip.open(tmp_path / "c.tsv.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in zip(src[:500], tgt[:500]))
    config = _config(tmp_path, f"data.train={tmp_path / 'c.tsv.gz'}")
    assert prepared_folder(config).parent == tmp_path / "prepared"
    assert len(prepare_data(config, progress=False).train) > 300  # 500 pairs, less those over max_length


def test_mixed_weights_and_empty_corpora_are_refused(tmp_path):
    from seq2seq.errors import UserError

    prefix = _corpus(tmp_path, 100)
    with pytest.raises(UserError, match="weight to every training corpus"):
        _config(tmp_path, f"data.train=[{{path: {prefix}, weight: 2}}, {prefix}]")
    (tmp_path / "e.de").write_text("\n\n", encoding="utf-8")
    (tmp_path / "e.en").write_text("\n\n", encoding="utf-8")
    result = run_cli("prepare", "configs/tiny.yaml", *[x for o in data_overrides() for x in ("--set", o)],
                     "--set", f"data.train={tmp_path / 'e'}", "--set", f"data.prepared_dir={tmp_path / 'prepared'}")
    assert result.returncode == 2 and "no training pairs" in result.stderr and "Traceback" not in result.stderr


def test_sampled_segmentations_are_prepared_once_and_taken_in_turn_by_epoch(tmp_path):
    """Subword regularisation: copies of the corpus in sampled segmentations of the same text; epoch e reads
    copy e mod 3; the usual copy is what translation's encoding gives."""
    prefix = _corpus(tmp_path, 500)
    config = _config(tmp_path, f"data.train={prefix}", "tokenizer.sampling_copies=3", "tokenizer.sampling_alpha=0.1")
    data = prepare_data(config, progress=False)
    train, tokenizer = data.train, data.tgt_tokenizer
    usual, sampled, _ = train.segmentations
    sources, _ = read_parallel(prefix, "de", "en")
    rows = [int(r) for r in train.parts[0].rows[:200]]
    for row in rows:
        assert len({tokenizer.decode(copy.tgt[row].tolist()) for copy in train.segmentations}) == 1  # same text
    assert usual.src[rows[0]].tolist() == data.src_tokenizer.encode(sources[rows[0]])
    assert sum(not np.array_equal(usual.tgt[r], sampled.tgt[r]) for r in rows) > 20
    for epoch, copy in ((0, usual), (1, sampled), (3, usual)):
        first_step = next(train.iterate_steps(epoch))[1][0]
        assert first_step.tgt_out.equal(copy.batch(train.epoch_batches(epoch)[0]).tgt_out)
    assert prepare_data(config, progress=False).folder == data.folder  # prepared once, copies included


def test_sampling_settings_change_the_key_only_when_sampling_is_on(tmp_path):
    base = _config(tmp_path, f"data.train={_corpus(tmp_path, 50)}")
    same = _config(tmp_path, f"data.train={base.data.train}", "tokenizer.sampling_alpha=0.3")
    sampled = _config(tmp_path, f"data.train={base.data.train}", "tokenizer.sampling_copies=2")
    assert prepared_folder(same) == prepared_folder(base) != prepared_folder(sampled)
