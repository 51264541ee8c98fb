"""Data-parallel training under torchrun: two CPU ranks (gloo) train like one rank at the same global
batch, only rank 0 writes, and a run killed under DDP resumes to the uninterrupted result; gradient
accumulation gives the gradient of one large batch."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.batching import TrainingPairs
from seq2seq.config import load_config
from seq2seq.errors import UserError
from tests.conftest import REPO, data_overrides

# Tiny and short: validations at steps 4 and 8 (a "step" being one optimizer update over both ranks),
# last.pt every 2 steps. Start-up (three interpreters, SentencePiece, gloo) is most of each run's time.
SMALL = ["data.max_pairs=400", "data.max_valid_pairs=10", "train.max_steps=8", "train.valid_every=4",
         "train.save_every=2", "train.batch_tokens=600", "tokenizer.vocab_size=500", "model.embedding_size=16",
         "model.encoder_hidden=16", "model.decoder_hidden=32"]
FINAL_STEP = 8
NO_DROPOUT = ["model.dropout=0"]  # the RNG then plays no part, so one rank and two can be compared closely


def _sets(extra: list[str]) -> list[str]:
    return [x for o in data_overrides() + SMALL + extra for x in ("--set", o)]


def _env(kill_at: str = "") -> dict:
    # One thread per rank: two ranks on two cores, as the default (cores / local ranks) also gives.
    return {**os.environ, "OMP_NUM_THREADS": "1", "SEQ2SEQ_KILL_AT": kill_at}


def _torchrun(run_dir: Path, *extra: str, sets: list[str] = (), kill_at: str = "") -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m seq2seq train`, each rank's output kept in run_dir/../ranks."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "--log-dir", str(run_dir.parent / "ranks"), "--redirects", "3"]
    command = [*launcher, "-m", "seq2seq", "train", "configs/tiny.yaml", "--run-dir", str(run_dir),
               *_sets(list(sets)), *extra]
    return subprocess.run(command, cwd=REPO, env=_env(kill_at), text=True, capture_output=True, timeout=300)


def _one_process(run_dir: Path, sets: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "seq2seq", "train", "configs/tiny.yaml", "--run-dir", str(run_dir), *_sets(sets),
               "--set", "train.threads=1"]
    return subprocess.run(command, cwd=REPO, env=_env(), text=True, capture_output=True, timeout=300)


def _rank_output(run_dir: Path, rank: int) -> str:
    """What one rank printed (stdout and stderr), from torchrun's per-rank log files."""
    files = sorted((run_dir.parent / "ranks").glob(f"*/attempt_*/{rank}/std*.log"))
    assert files, f"no output files of rank {rank}"
    return "".join(f.read_text() for f in files)


def _records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("tokens_per_sec", "elapsed_sec")} for row in rows]


def _weights(run_dir: Path, name: str = "last.pt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)["model"]


def _optimizer_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["train_state"]["optimizer"]["state"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """8 steps on two ranks, dropout on (so every rank's RNG matters to the resume test)."""
    run_dir = tmp_path_factory.mktemp("two_ranks") / "run"
    result = _torchrun(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_two_ranks_train_like_one_rank_at_the_same_global_batch(tmp_path: Path):
    """2 ranks × batch B against 1 rank × 2 accumulated batches of B: the same batches make each step
    (rank r takes every 2nd), and the gradient is the per-token mean over the whole step in both, so
    without dropout the runs differ only in the order of float additions. The tolerance (1e-5 relative)
    allows for that and nothing else; in practice the two agree to the last bit."""
    two, one = tmp_path / "two" / "run", tmp_path / "one"
    result = _torchrun(two, sets=NO_DROPOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    result = _one_process(one, NO_DROPOUT + ["train.accumulate=2"])
    assert result.returncode == 0, result.stderr[-3000:]

    ranks, single = _records(two), _records(one)
    assert [r["step"] for r in ranks] == [r["step"] for r in single] == [4, FINAL_STEP]
    for a, b in zip(ranks, single):
        for key in ("train_loss", "valid_loss", "epoch"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (key, a, b)
    assert ranks[-1]["valid_loss"] < ranks[0]["valid_loss"] and ranks[-1]["train_loss"] < ranks[0]["train_loss"]
    want, got = _weights(one), _weights(two)
    assert all(torch.allclose(want[k], got[k], rtol=1e-4, atol=1e-6) for k in want)
    # Adam's moments scale with the gradient (its updates hardly do), so they show a gradient off by the
    # number of ranks, which the losses would not.
    want, got = (_optimizer_state(d) for d in (one, two))
    assert all(torch.allclose(want[i][k], got[i][k], rtol=1e-4, atol=1e-9)
               for i in want for k in ("exp_avg", "exp_avg_sq"))


def test_only_rank_0_writes_checkpoints_logs_and_metrics(two_ranks: Path):
    files = sorted(p.name for p in (two_ranks / "checkpoints").iterdir())
    assert files == ["best.pt", "last.pt", "step_4.pt", "step_8.pt"]  # no temporaries: no second writer raced
    assert [r["step"] for r in _records(two_ranks)] == [4, FINAL_STEP]  # each validation logged once
    log = (two_ranks / "train.log").read_text()
    assert log.count(" step 8 epoch ") == 1 and "rank 0 of 2" in log
    assert "step 8 epoch" in _rank_output(two_ranks, 0)
    assert _rank_output(two_ranks, 1).strip() == ""  # rank 1 trained in silence
    state = torch.load(two_ranks / "checkpoints/last.pt", weights_only=True)["train_state"]
    assert len(state["rng"]["ranks"]) == 2  # yet its RNG is in rank 0's checkpoint, for resume


def test_killed_under_ddp_resumes_to_the_uninterrupted_result(tmp_path: Path, two_ranks: Path):
    """Every rank SIGKILLed inside step 7 (last.pt holds step 6); the resumed run, every rank loading
    that checkpoint (weights, optimizer, data position, each rank's RNG), ends bit for bit where the
    uninterrupted two-rank run ends."""
    run_dir = tmp_path / "killed" / "run"
    killed = _torchrun(run_dir, kill_at="train-step:7")
    assert killed.returncode != 0
    assert f"exitcode  : -{int(signal.SIGKILL)}" in killed.stderr
    assert torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["train_state"]["progress"]["step"] == 6

    resumed = _torchrun(run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 6" in (run_dir / "train.log").read_text()
    assert _records(run_dir) == _records(two_ranks)
    for name in ("last.pt", "best.pt"):
        want, got = _weights(two_ranks, name), _weights(run_dir, name)
        assert all(torch.equal(want[k], got[k]) for k in want), f"{name} weights differ"


# --- in one process ------------------------------------------------------------------------------

def _toy_dataset(n: int = 40) -> TrainingPairs:
    lengths = [(3 + i % 7, 2 + (i * 5) % 9) for i in range(n)]
    return TrainingPairs.from_lists([[5] * s for s, _ in lengths], [[6] * t for _, t in lengths],
                                    batch_tokens=40, seed=3)


def test_shards_partition_each_step_and_keep_ranks_in_lockstep():
    data = _toy_dataset()
    order = data.epoch_batches(0)
    assert [p for p, _ in data.iterate_steps(0)] == list(range(1, len(order) + 1))  # one rank: every batch
    for world, accumulate in ((2, 1), (2, 2), (3, 2)):
        group = world * accumulate
        shards = [list(data.iterate_steps(0, 0, accumulate, rank, world)) for rank in range(world)]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(order) // group  # same step count
        for step in range(len(shards[0])):
            positions = {shards[r][step][0] for r in range(world)}
            assert positions == {(step + 1) * group}  # all ranks agree where the epoch stands
            taken = sorted(len(b.src) for r in range(world) for b in shards[r][step][1])
            assert taken == sorted(len(ix) for ix in order[step * group:(step + 1) * group])


def test_accumulate_is_validated():
    with pytest.raises(UserError, match="train.accumulate"):
        load_config(REPO / "configs/tiny.yaml", ["train.accumulate=0"])
    assert load_config(REPO / "configs/tiny.yaml", ["train.accumulate=4"]).train.accumulate == 4


def test_accumulated_batches_give_the_gradient_of_one_large_batch(tmp_path: Path):
    """One step over two accumulated batches of B, and one over the same sentences as a single batch of
    2B: the same loss and gradients (summation order aside), since both divide by the step's tokens."""
    from seq2seq.train import Trainer

    # fp32: under bf16 autocast the rounding depends on the batch's shape, so the two would differ by more
    sets = data_overrides() + SMALL + NO_DROPOUT + ["train.threads=1", "train.accumulate=2", "train.amp=false"]
    trainer = Trainer(load_config(REPO / "configs/tiny.yaml", sets), tmp_path)
    first, second = (trainer.data.train.epoch_batches(0)[i] for i in (0, 1))
    pairs = trainer.data.train.pairs
    small = [pairs.batch(rows) for rows in (first, second)]
    large = pairs.batch(np.concatenate([first, second]))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def step(batches) -> tuple[float, int, list[torch.Tensor]]:
        trainer.model.load_state_dict(initial)
        loss, tokens = trainer._train_step(batches)
        return loss, tokens, [p.grad.clone() for p in trainer.model.parameters()]

    loss_a, tokens_a, grads_a = step(small)
    loss_b, tokens_b, grads_b = step([large])
    assert tokens_a == tokens_b and loss_a == pytest.approx(loss_b, rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(grads_a, grads_b))
