"""Crash-safe training: a run killed with SIGKILL anywhere (mid-step, mid-validation, half-way through
writing a checkpoint) and resumed ends exactly where an uninterrupted run ends, and never leaves a broken
checkpoint; a full disk or a read-only run directory stops training with one clear line and keeps the
last good checkpoint."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import read_checkpoint
from tests.conftest import REPO, data_overrides, run_cli

# Small enough for seconds per run: validations at steps 4 and 8, last.pt every 2 steps.
SMALL = ["data.max_pairs=400", "data.max_valid_pairs=10", "train.max_steps=8", "train.valid_every=4",
         "train.save_every=2", "train.batch_tokens=600", "tokenizer.vocab_size=500", "model.embedding_size=16",
         "model.encoder_hidden=16", "model.decoder_hidden=32"]
FINAL_STEP = 8


def _args(run_dir: Path) -> list[str]:
    sets = [x for o in data_overrides() + SMALL for x in ("--set", o)]
    return ["train", "configs/tiny.yaml", "--run-dir", str(run_dir), *sets]


def _train(run_dir: Path, *extra: str, kill_at: str = "", preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQ2SEQ_KILL_AT": kill_at}
    return subprocess.run([sys.executable, "-m", "seq2seq", *_args(run_dir), *extra], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=600, preexec_fn=preexec)


def _saved_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["train_state"]["progress"]["step"]
    except Exception:  # not written yet
        return 0


def _records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields, which differ between any two runs."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("tokens_per_sec", "elapsed_sec")} for row in rows]


def _assert_all_checkpoints_load(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        read_checkpoint(path)  # raises on a truncated or damaged file


def _assert_same_as_straight(run_dir: Path, straight: Path) -> None:
    expected, actual = _records(straight), _records(run_dir)
    assert actual[-1]["step"] == expected[-1]["step"] == FINAL_STEP
    assert actual == expected  # every validation: the same losses and BLEU, bit for bit
    for name in ("last.pt", "best.pt"):
        want, got = (torch.load(d / "checkpoints" / name, weights_only=True)["model"] for d in (straight, run_dir))
        assert all(torch.equal(want[k], got[k]) for k in want), f"{name} weights differ"
    assert not list((run_dir / "checkpoints").glob(".*tmp*")), "temporary files left behind"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight")
    result = _train(run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_kill_and_resume_matches_uninterrupted(tmp_path: Path, straight: Path):
    """A kill timed from outside, by watching last.pt, as an operator's `kill -9` would come."""
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "seq2seq", *_args(killed)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _saved_step(killed / "checkpoints/last.pt") < 4 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _saved_step(killed / "checkpoints/last.pt") < FINAL_STEP, "the run finished before it could be killed"
    _assert_all_checkpoints_load(killed)

    resumed = run_cli(*_args(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_as_straight(killed, straight)


# Saves: step 2 last.pt (write 1); step 4 best.pt (2), step_4.pt (3), last.pt (4); step 6 last.pt (5) ...
@pytest.mark.parametrize("kill_at, resumes_from", [
    ("train-step:7", 6),         # in step 7, between backward and the optimizer update
    ("validation:2", 6),         # in the validation at step 8, after its loss
    ("checkpoint-write:4", 2),   # half of step 4's last.pt written; best.pt and step_4.pt already complete
])
def test_killed_at_each_point_resumes_to_the_same_result(tmp_path: Path, straight: Path, kill_at: str,
                                                         resumes_from: int):
    run_dir = tmp_path / "run"
    killed = _train(run_dir, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = run_dir / "checkpoints/last.pt"
    assert read_checkpoint(last)["train_state"]["progress"]["step"] == resumes_from
    _assert_all_checkpoints_load(run_dir)
    if kill_at.startswith("checkpoint-write"):
        half = list((run_dir / "checkpoints").glob(".last.pt.tmp*"))
        assert len(half) == 1 and 0 < half[0].stat().st_size < last.stat().st_size  # really killed mid-write

    resumed = _train(run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed at step {resumes_from}" in resumed.stdout  # the log goes to stdout, through tqdm
    _assert_same_as_straight(run_dir, straight)


def _one_clear_line(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit 2, no traceback, and the reason as the last line of stderr."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("seq2seq train: error: "), line
    for phrase in phrases:
        assert phrase in line, line
    return line


def _can_mount_tmpfs(path: Path) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


def test_full_disk_and_read_only_run_dir_stop_cleanly(tmp_path: Path, straight: Path):
    """A real full disk (a small tmpfs: ENOSPC) and a real read-only file system (EROFS), which stop root
    too. Where mounting is not allowed, a file-size limit (RLIMIT_FSIZE: EFBIG) stands in for the full disk."""
    disk = tmp_path / "disk"
    mounted = _can_mount_tmpfs(disk)
    run_dir = disk / "run"
    try:
        assert _train(run_dir, kill_at="train-step:7").returncode == -signal.SIGKILL  # last.pt at step 6
        last = run_dir / "checkpoints/last.pt"
        good = last.read_bytes()

        if mounted:  # leave less room than one checkpoint
            stats = os.statvfs(disk)
            used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
            _remount(disk, f"size={used + len(good) // 3}")
            full = _train(run_dir, "--resume")
            reason = "No space left on device"
        else:
            def limit_file_size():
                resource.setrlimit(resource.RLIMIT_FSIZE, (len(good) // 3, len(good) // 3))
            full = _train(run_dir, "--resume", preexec=limit_file_size)
            reason = "File too large"
        _one_clear_line(full, "training stopped at step 8", reason, "cannot write checkpoint",
                        "last good checkpoint", "step 6) is kept")
        assert last.read_bytes() == good and read_checkpoint(last)["train_state"]["progress"]["step"] == 6
        assert not list(last.parent.glob(".*tmp*")), "a failed write left its temporary file"

        if mounted:
            _remount(disk, "ro")
            _one_clear_line(_train(run_dir, "--resume"), "cannot write to the run directory", "Read-only file system")
            assert last.read_bytes() == good
            _remount(disk, "rw,size=16m")
        # Room again: the kept checkpoint resumes to the uninterrupted result.
        resumed = _train(run_dir, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        _assert_same_as_straight(run_dir, straight)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
