"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.conftest import REPO, data_overrides, run_cli

SMALL = ["data.max_pairs=600", "data.max_valid_pairs=50", "train.max_steps=40", "train.valid_every=20",
         "train.save_every=4", "model.embedding_size=32", "model.encoder_hidden=32", "model.decoder_hidden=64"]


def _args(run_dir: Path) -> list[str]:
    sets = [x for o in data_overrides() + SMALL for x in ("--set", o)]
    return ["train", "configs/tiny.yaml", "--run-dir", str(run_dir), *sets]


def _saved_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["train_state"]["progress"]["step"]
    except Exception:  # not written yet
        return 0


def _last_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_kill_and_resume_matches_uninterrupted(tmp_path: Path):
    straight = tmp_path / "straight"
    assert run_cli(*_args(straight)).returncode == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "seq2seq", *_args(killed)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _saved_step(killed / "checkpoints/last.pt") < 8 and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _saved_step(killed / "checkpoints/last.pt") < 40, "the run finished before it could be killed"

    resumed = run_cli(*_args(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, actual = _last_record(straight), _last_record(killed)
    assert actual["step"] == expected["step"] == 40
    assert actual["valid_loss"] == expected["valid_loss"]
    assert actual["train_loss"] == expected["train_loss"]
