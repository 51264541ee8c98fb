"""The run directory's config.yaml is real YAML that `seq2seq train` takes back as the same Config."""
from pathlib import Path

import yaml

from seq2seq.config import load_config
from seq2seq.run_state import write_config
from tests.conftest import REPO, data_overrides


def test_the_runs_config_yaml_loads_back_as_the_config_it_trained_with(tiny_run: Path):
    written = tiny_run / "config.yaml"
    assert isinstance(yaml.safe_load(written.read_text(encoding="utf-8")), dict)
    assert not written.read_text(encoding="utf-8").lstrip().startswith("{")  # YAML, not JSON
    assert load_config(written) == load_config(REPO / "configs/tiny.yaml", data_overrides())


def test_values_yaml_would_read_as_other_types_come_back_as_written(tmp_path: Path):
    # "on" and "null" are YAML 1.1 words for true and None; a path may hold any character.
    config = load_config(REPO / "configs/tiny.yaml", ["train.lr=1e-05", "train.max_minutes=2.5"])
    config.name, config.run_dir, config.data.train = "on", "null", "données/train: a"
    write_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
