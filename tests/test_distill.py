"""Distillation: the teacher's translations of the training source, line for line, resumable after a kill,
refused when resumed with another teacher or other options."""
from __future__ import annotations

import os
from pathlib import Path

from seq2seq.config import load_config
from seq2seq.corpus import cleaned, read_parallel
from seq2seq.translate import Translator
from tests.conftest import MULTI30K, REPO, data_overrides, run_cli

PAIRS = 120


def _sets() -> list[str]:
    return [x for o in [*data_overrides(), f"data.max_pairs={PAIRS}"] for x in ("--set", o)]


def _distill(checkpoint: str, prefix: Path, *extra: str, env: dict | None = None):
    command = ["distill", "configs/tiny.yaml", "--checkpoint", checkpoint, "--output", str(prefix),
               "--chunk-lines", "50", "--beam-size", "2", *_sets(), *extra]
    if env is None:
        return run_cli(*command)
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "seq2seq", *command], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env}, timeout=600)


def test_distilled_corpus_is_the_teachers_beam_translation_of_the_training_source(checkpoint, tmp_path):
    result = _distill(checkpoint, tmp_path / "distilled")
    assert result.returncode == 0, result.stderr[-2000:]
    src, tgt = read_parallel(str(tmp_path / "distilled"), "de", "en")
    expected_src = [s for s, _ in cleaned(zip(*read_parallel(str(MULTI30K / "train"), "de", "en")))][:PAIRS]
    assert src == expected_src
    teacher = Translator(checkpoint, device="cpu")
    assert tgt == [t.text for t in teacher.translate(src, teacher.options(beam_size=2))]
    config = load_config(REPO / "configs/tiny.yaml", [*data_overrides(), f"data.train={tmp_path / 'distilled'}"])
    assert config.data.train_corpora[0].path == str(tmp_path / "distilled")  # the student's data.train


def test_a_killed_distillation_resumes_to_the_same_corpus(checkpoint, tmp_path):
    killed = _distill(checkpoint, tmp_path / "resumed", env={"SEQ2SEQ_KILL_AT": "distill-chunk:2"})
    assert killed.returncode == -9
    with open(tmp_path / "resumed.en", "ab") as f:
        f.write(b"half a line that the kill left beh")  # as if killed in the middle of a write
    resumed = _distill(checkpoint, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _distill(checkpoint, tmp_path / "whole").returncode == 0
    for side in ("de", "en"):
        assert (tmp_path / f"resumed.{side}").read_bytes() == (tmp_path / f"whole.{side}").read_bytes()
    assert len((tmp_path / "whole.en").read_text().splitlines()) == PAIRS
    again = _distill(checkpoint, tmp_path / "whole")  # complete: nothing to do
    assert again.returncode == 0 and f"distilled {PAIRS} lines" in again.stdout


def test_resuming_with_other_options_or_files_in_the_way_is_refused(checkpoint, tmp_path):
    assert _distill(checkpoint, tmp_path / "d").returncode == 0
    other = _distill(checkpoint, tmp_path / "d", "--beam-size", "3")
    assert other.returncode == 2 and "another teacher, decoding options" in other.stderr
    (tmp_path / "stray.de").write_text("x\n")
    stray = _distill(checkpoint, tmp_path / "stray")
    assert stray.returncode == 2 and "not a distillation to resume" in stray.stderr


def _train(run_dir: Path, *overrides: str):
    sets = [*data_overrides(), "train.max_steps=1", "train.valid_every=1", *overrides]
    return run_cli("train", "configs/tiny.yaml", "--run-dir", str(run_dir), *[x for o in sets for x in ("--set", o)])


def test_a_student_started_from_its_teacher_has_its_weights_and_tokenizers(checkpoint, tmp_path):
    assert _distill(checkpoint, tmp_path / "distilled").returncode == 0
    # One step at a vanishing rate: the student is still the teacher, so it must translate as the teacher does.
    result = _train(tmp_path / "student", f"data.train={tmp_path / 'distilled'}", f"train.init_from={checkpoint}",
                    "train.lr=1e-12")
    assert result.returncode == 0, result.stderr[-2000:]
    student_checkpoint = str(tmp_path / "student/checkpoints/last.pt")
    teacher, student = (Translator(c, device="cpu") for c in (checkpoint, student_checkpoint))
    assert student.loaded.src_tokenizer.model_proto == teacher.loaded.src_tokenizer.model_proto
    sentences = ["Ein Hund läuft über eine Wiese.", "Zwei Männer spielen Fußball im Park."]
    options = teacher.options(beam_size=2)
    translations = [[t.text for t in model.translate(sentences, options)] for model in (student, teacher)]
    assert translations[0] == translations[1]


def test_starting_from_a_checkpoint_of_another_architecture_or_direction_is_refused(checkpoint, tmp_path):
    other = _train(tmp_path / "wider", f"train.init_from={checkpoint}", "model.decoder_hidden=96")
    assert other.returncode == 2 and "decoder_hidden: 128 there, 96 here" in other.stderr
    reverse = _train(tmp_path / "en_de", f"train.init_from={checkpoint}", "data.src_lang=en", "data.tgt_lang=de")
    assert reverse.returncode == 2 and "translates de→en" in reverse.stderr
    missing = _train(tmp_path / "missing", f"train.init_from={tmp_path / 'none.pt'}")
    assert missing.returncode == 2 and "none.pt" in missing.stderr
