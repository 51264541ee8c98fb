from pathlib import Path

import pytest

from seq2seq.config import load_config
from seq2seq.errors import UserError
from tests.conftest import REPO, run_cli


@pytest.mark.parametrize("name", ["tiny.yaml", "multi30k_de_en.yaml", "quickstart.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(REPO / "configs" / name)
    assert config.data.src_lang and config.train


def test_set_overrides_are_typed():
    config = load_config(REPO / "configs/tiny.yaml", ["model.rnn=gru", "train.lr=0.01", "model.bidirectional=false"])
    assert (config.model.rnn, config.train.lr, config.model.bidirectional) == ("gru", 0.01, False)


def test_misspelt_key_is_named(tmp_path: Path):
    text = (REPO / "configs/tiny.yaml").read_text().replace("attention: bahdanau", "atention: bahdanau")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UserError, match=r"model\.atention: unknown key"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("override, message", [
    ("model.attention=cosine", "model.attention"),
    ("model.dropout=1.5", "model.dropout"),
    ("train.lr=-1", "train.lr"),
    ("tokenizer.type=wordpiece", "tokenizer.type"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(UserError, match=message):
        load_config(REPO / "configs/tiny.yaml", [override])


def test_dot_attention_needs_matching_sizes():
    with pytest.raises(UserError, match="dot attention"):
        load_config(REPO / "configs/tiny.yaml", ["model.attention=dot", "model.decoder_hidden=100"])
    ok = load_config(REPO / "configs/tiny.yaml", ["model.attention=dot", "model.decoder_hidden=128"])  # 2 × 64
    assert ok.model.attention == "dot"


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("model: {rnn: transformer}\n")
    result = run_cli("train", str(tmp_path / "bad.yaml"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "model.rnn" in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_config_exits_2(tmp_path: Path):
    result = run_cli("train", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "not found" in result.stderr
