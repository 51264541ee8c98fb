"""A small model memorises a few hundred real pairs: greedy output reproduces most training targets."""
from pathlib import Path

from seq2seq.config import load_config
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
