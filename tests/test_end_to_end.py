"""The user's path: train configs/tiny.yaml through the CLI, then translate with its checkpoint."""
import json
from pathlib import Path

from tests.conftest import run_cli


def test_tiny_run_writes_checkpoints_metrics_and_plot(tiny_run: Path):
    assert (tiny_run / "checkpoints/last.pt").is_file() and (tiny_run / "checkpoints/best.pt").is_file()
    assert (tiny_run / "train.log").is_file() and (tiny_run / "learning_curve.png").is_file()
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert records, "one record per validation"
    for key in ("step", "epoch", "train_loss", "valid_loss", "valid_ppl", "bleu", "lr", "tokens_per_sec"):
        assert key in records[-1]
    assert records[-1]["valid_loss"] < records[0]["valid_loss"] or len(records) == 1


def test_translate_prints_english(tiny_run: Path):
    result = run_cli("translate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"),
                     stdin="Ein Hund läuft.\n\nZwei Männer spielen Fußball.\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[1] == "" and lines[0] and lines[2]  # empty line stays empty, order kept
    assert any(word in lines[0].lower() for word in ("dog", "a ", "the"))


def test_not_a_checkpoint_exits_2_with_one_line(tmp_path: Path):
    for name, content in [("text.pt", b"hello"), ("empty.pt", b"")]:
        (tmp_path / name).write_bytes(content)
        result = run_cli("translate", "--checkpoint", str(tmp_path / name), stdin="Hallo\n")
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "not a seq2seq checkpoint" in result.stderr
    result = run_cli("translate", "--checkpoint", str(tmp_path / "missing.pt"), stdin="Hallo\n")
    assert result.returncode == 2 and "not found" in result.stderr


def test_pickled_code_is_never_executed(tmp_path: Path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch
    torch.save({"format": "seq2seq-checkpoint", "x": Exploit()}, tmp_path / "evil.pt", pickle_module=pickle)
    result = run_cli("translate", "--checkpoint", str(tmp_path / "evil.pt"), stdin="Hallo\n")
    assert result.returncode == 2 and not marker.exists()


def test_existing_run_is_not_overwritten_without_resume(tiny_run: Path):
    result = run_cli("train", "configs/tiny.yaml", "--run-dir", str(tiny_run))
    assert result.returncode == 2 and "--resume" in result.stderr
