"""Safe checkpoints: loading never runs pickled code; truncated, foreign, damaged and incompatible files
get one clear error, from the library, the CLI (exit 2) and the service's start-up (exit 2)."""
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import VERSION, load_model, make_checkpoint, read_checkpoint, save_checkpoint
from seq2seq.config import Config
from seq2seq.errors import UserError
from seq2seq.model import build_model
from tests.conftest import run_cli


class Exploit:
    """Unpickling this runs a shell command that creates `marker`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good(toy_tokenizer, tmp_path_factory) -> Path:
    """A real, small, untrained checkpoint (the format is what matters here, not the weights)."""
    config = Config.model_validate({"data": {"src_lang": "de", "tgt_lang": "en", "train": "x", "valid": "y"},
                                     "train": {"max_steps": 1},
                                     "model": {"embedding_size": 16, "encoder_hidden": 16, "decoder_hidden": 32}})
    model = build_model(config.model, toy_tokenizer.vocab_size, toy_tokenizer.vocab_size)
    path = tmp_path_factory.mktemp("good") / "good.pt"
    save_checkpoint(make_checkpoint(config, model, toy_tokenizer, toy_tokenizer), path)
    return path


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The same payload in each pickle container torch.load understands."""
    payload = {"format": "seq2seq-checkpoint", "version": VERSION, "x": Exploit(marker)}
    files = {name: folder / f"{name}.pt" for name in ("zip", "legacy", "raw")}
    torch.save(payload, files["zip"], pickle_module=pickle)
    torch.save(payload, files["legacy"], pickle_module=pickle, _use_new_zipfile_serialization=False)
    files["raw"].write_bytes(pickle.dumps(payload, protocol=2))
    return files


def test_pickled_code_never_runs_in_the_library(tmp_path: Path):
    marker = tmp_path / "pwned"
    for name, path in _evil_files(tmp_path, marker).items():
        with pytest.raises(UserError, match="refused: it holds pickled code") as err:
            read_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), name
        assert not marker.exists(), f"{name}: the pickled code ran"
    pickle.loads(pickle.dumps(Exploit(marker)))  # the control: unpickled without protection, it does run
    assert marker.exists()


def test_pickled_code_is_refused_by_the_cli_and_the_service(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = _evil_files(tmp_path, marker)
    result = run_cli("translate", "--checkpoint", str(evil["zip"]), stdin="Hallo\n")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "refused" in result.stderr and "pickled code" in result.stderr and "posix.system" in result.stderr
    result = run_cli("evaluate", "--checkpoint", str(evil["legacy"]), "--src", str(evil["raw"]), "--ref",
                     str(evil["raw"]))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    # The service refuses to start: one line and exit 2, before it listens.
    for args in (["--checkpoint", str(evil["raw"])], ["--models-dir", str(tmp_path)]):
        result = run_cli("serve", "--port", "1", *args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("seq2seq serve: error: ")
    assert not marker.exists(), "the pickled code ran"


def test_truncated_files_get_a_clear_error(good: Path, tmp_path: Path):
    data = good.read_bytes()
    for size in (0, 10, 1000, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{size}.pt"
        cut.write_bytes(data[:size])
        with pytest.raises(UserError, match="not a seq2seq checkpoint, or is truncated"):
            read_checkpoint(cut)
    result = run_cli("translate", "--checkpoint", str(tmp_path / f"cut{len(data) // 2}.pt"), stdin="Hallo\n")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "truncated" in result.stderr


def test_foreign_files_get_a_clear_error(tmp_path: Path):
    foreign = {"tensor.pt": None, "dict.pt": None, "archive.zip": None, "image.png": None}
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "dict.pt")  # someone else's checkpoint
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as archive:
        archive.writestr("data.pkl", b"not a pickle")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    for name in foreign:
        with pytest.raises(UserError, match="not a seq2seq checkpoint") as err:
            read_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path)  # a folder


def test_format_version_is_recorded_and_incompatible_ones_are_named(good: Path, tmp_path: Path):
    payload = torch.load(good, weights_only=True)
    assert payload["format"] == "seq2seq-checkpoint" and payload["version"] == VERSION
    for version, words in [(VERSION + 1, "written by a newer seq2seq"), (0, "version 0"), (None, "version None"),
                           ("1", "version '1'")]:
        path = tmp_path / f"v{version}.pt"
        torch.save({**payload, "version": version}, path)
        with pytest.raises(UserError, match="incompatible checkpoint format version") as err:
            read_checkpoint(path)
        assert words in str(err.value)
    torch.save({**payload, "version": VERSION + 1}, tmp_path / "newer.pt")
    result = run_cli("translate", "--checkpoint", str(tmp_path / "newer.pt"), stdin="Hallo\n")
    assert result.returncode == 2 and "incompatible checkpoint format version 2" in result.stderr


def test_damaged_checkpoints_get_a_clear_error(good: Path, tmp_path: Path):
    payload = torch.load(good, weights_only=True)
    cases = {
        "no_model": {k: v for k, v in payload.items() if k != "model"},
        "wrong_shapes": {**payload, "model": {k: v[..., :1] for k, v in payload["model"].items()}},
        "bad_tokenizer": {**payload, "tokenizers": {"source": b"garbage", "target": b"garbage"}},
        "bad_config": {**payload, "config": {**payload["config"], "model": {"rnn": "transformer"}}},
    }
    for name, broken in cases.items():
        torch.save(broken, tmp_path / f"{name}.pt")
        with pytest.raises(UserError) as err:
            load_model(tmp_path / f"{name}.pt")
        assert "\n" not in str(err.value), name
    assert load_model(good).model is not None  # and the intact one still loads
