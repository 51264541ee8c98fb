"""A small model memorises a few hundred real pairs: greedy output reproduces most training targets; mixed
precision learns like fp32."""
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import read_checkpoint
from seq2seq.config import load_config
from seq2seq.precision import native_bf16
from seq2seq.train import train
from tests.conftest import MULTI30K, REPO, data_overrides


def test_small_model_memorises_200_pairs(tmp_path: Path):
    data_overrides()
    config = load_config(REPO / "configs/tiny.yaml", [
        f"data.train={MULTI30K}/train", f"data.valid={MULTI30K}/train",  # validate on the training pairs
        "data.max_pairs=200", "data.max_valid_pairs=200", "model.dropout=0", "train.label_smoothing=0",
        "train.max_steps=400", "train.valid_every=400", "train.lr=0.005", "train.batch_tokens=1000",
    ])
    record = train(config, str(tmp_path / "run"))
    assert record["bleu"] > 60, record


def test_mixed_precision_on_a_cpu_trains_in_bf16_like_fp32(tmp_path: Path):
    """`train.amp` on a CPU that multiplies bf16 natively: the products run in bf16 (the run differs from
    fp32), the model learns as well, and the weights it keeps and saves stay fp32."""
    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16, so train.amp leaves training in fp32")
    records = {}
    for amp in (False, True):
        config = load_config(REPO / "configs/tiny.yaml", [
            *data_overrides(), "data.max_pairs=1000", "train.max_steps=60", "train.valid_every=60",
            f"train.amp={str(amp).lower()}"])
        records[amp] = train(config, str(tmp_path / f"amp_{amp}"))
    assert records[True]["train_loss"] != records[False]["train_loss"]  # bf16 really ran
    assert abs(records[True]["valid_loss"] - records[False]["valid_loss"]) < 0.05 * records[False]["valid_loss"]
    saved = read_checkpoint(tmp_path / "amp_True/checkpoints/last.pt")["model"]
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}


@pytest.mark.parametrize("patience", ["1", "null"])
def test_early_stopping_stops_after_its_patience_and_null_trains_the_whole_budget(tmp_path: Path, patience):
    """A learning rate too small to change anything: validation never improves after the first one."""
    config = load_config(REPO / "configs/tiny.yaml", [
        *data_overrides(), "data.max_pairs=100", "data.max_valid_pairs=20", "train.lr=1e-12", "train.min_lr=1e-12",
        "train.max_steps=8", "train.valid_every=2", "train.batch_tokens=300",
        f"train.early_stopping.patience={patience}"])
    record = train(config, str(tmp_path / "run"))
    assert record["step"] == (4 if patience == "1" else 8), record


def test_cosine_schedule_anneals_to_the_budget_and_early_stopping_waits_for_the_annealing():
    from seq2seq.config import TrainConfig
    from seq2seq.schedule import LRSchedule

    cosine = LRSchedule(TrainConfig(schedule="cosine", lr=0.002, min_lr=1e-5, anneal_start=0.5, max_minutes=20))
    assert cosine.lr(100, budget_used=0.3) == pytest.approx(0.002)  # full rate before the annealing
    assert cosine.lr(100, budget_used=0.75) == pytest.approx((0.002 + 1e-5) / 2)
    assert cosine.lr(100, budget_used=1.0) == pytest.approx(1e-5)
    # a plateau at full rate is not a reason to stop: the budget's annealing half is still to come
    assert not cosine.counts_stalls(0.3) and cosine.counts_stalls(0.5) and cosine.counts_stalls(0.9)
    assert LRSchedule(TrainConfig(schedule="plateau", max_steps=100)).counts_stalls(0.0)
