"""Checkpoints: one self-contained file, written atomically, loaded without executing pickled code."""
from __future__ import annotations

import io
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from seq2seq.config import Config, config_from_dict
from seq2seq.errors import UserError
from seq2seq.faults import fault_point
from seq2seq.model import Seq2Seq, build_model
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1  # the checkpoint layout; bump it when a key changes meaning, and list the readable ones below
READABLE_VERSIONS = (1,)
REQUIRED_KEYS = ("config", "languages", "model", "tokenizers")
TMP_MARK = ".tmp"  # temporary files are '.NAME.tmpPID': hidden, and never matching *.pt


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (full disk, read-only folder); the previous file is untouched."""


def make_checkpoint(config: Config, model: Seq2Seq, src_tok: Tokenizer, tgt_tok: Tokenizer,
                    train_state: Optional[dict] = None, metrics: Optional[dict] = None) -> dict:
    """Everything needed to translate (and, with `train_state`, to resume training)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.model_dump(mode="json"),
        "languages": {"source": config.data.src_lang, "target": config.data.tgt_lang},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizers": {"source": src_tok.model_proto, "target": tgt_tok.model_proto},
        "metrics": metrics or {},
        "train_state": train_state,
    }


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """Write `payload` so that `path` always holds either the old file or the whole new one.

    The bytes go to a temporary file in the same folder, are flushed to the disk, and only then renamed
    over `path`: a crash, a kill or a full disk at any moment leaves the previous checkpoint intact.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # serialised in memory, so write errors surface as OSError with an errno
    data = buffer.getbuffer()
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            # Two halves, with the fault point between them: where a crash leaves a half-written file.
            f.write(data[: len(data) // 2])
            f.flush()
            fault_point("checkpoint-write")
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())  # on the disk before the rename makes it the checkpoint
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {err.strerror or err}") from None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left behind (never a checkpoint itself)."""
    stale = [p for p in Path(folder).glob(f".*.pt{TMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load and check a checkpoint file; anything else is a UserError with one clear line.

    torch.load(weights_only=True) unpickles only tensors and plain containers, so a file crafted to run
    code when unpickled is refused before any of it runs. With `mmap` the tensors stay in the file until
    read, so a caller that needs only the config and tokenizers never holds the weights in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the one line below says enough
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        blocked = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "reduce" in line]
        if blocked:  # the file asks to import or call something: a checkpoint never does
            raise UserError(f"{path} refused: it holds pickled code or objects, not just tensors and plain data "
                            f"({blocked[0][:120]})") from None
        raise UserError(f"{path} is not a seq2seq checkpoint (unreadable pickle data)") from None
    except Exception as err:  # noqa: BLE001 - any parse failure of an untrusted file means 'not a checkpoint'
        raise UserError(f"{path} is not a seq2seq checkpoint, or is truncated ({_first_line(err)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a seq2seq checkpoint (no '{FORMAT}' marker)")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        newer = " (written by a newer seq2seq)" if isinstance(version, int) and version > VERSION else ""
        raise UserError(f"{path} has incompatible checkpoint format version {version!r}{newer}; "
                        f"this seq2seq reads version {', '.join(map(str, READABLE_VERSIONS))}")
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload.get(key), dict)]
    if missing:
        raise UserError(f"{path} is a damaged seq2seq checkpoint (missing {', '.join(missing)})")
    return payload


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:120]


@dataclass
class ModelCard:
    """What a checkpoint says about its model without the weights: enough to route, split and validate requests."""

    config: Config
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    metrics: dict[str, Any]

    @property
    def src_lang(self) -> str:
        return self.config.data.src_lang

    @property
    def tgt_lang(self) -> str:
        return self.config.data.tgt_lang

    @property
    def max_source_pieces(self) -> int:
        """The longest sentence the model was trained on: longer ones are split before translation."""
        return self.config.data.max_length


@dataclass
class LoadedModel(ModelCard):
    model: Seq2Seq


def _damaged(err: BaseException) -> UserError:
    return UserError("damaged seq2seq checkpoint: its tokenizers or weights do not match its config "
                     f"({_first_line(err)})")


def card_from_checkpoint(payload: dict) -> ModelCard:
    """The config, tokenizers and metrics of a checkpoint read by `read_checkpoint`."""
    config = config_from_dict(payload["config"])
    try:
        src_tok = Tokenizer(payload["tokenizers"]["source"])
        tgt_tok = Tokenizer(payload["tokenizers"]["target"])
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise _damaged(err) from None
    return ModelCard(config, src_tok, tgt_tok, payload.get("metrics", {}))


def model_from_checkpoint(payload: dict, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model and tokenizers; a checkpoint whose parts do not fit together is a UserError."""
    card = card_from_checkpoint(payload)
    try:
        model = build_model(card.config.model, card.src_tokenizer.vocab_size, card.tgt_tokenizer.vocab_size)
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise _damaged(err) from None
    model.to(device).eval()
    return LoadedModel(card.config, card.src_tokenizer, card.tgt_tokenizer, card.metrics, model)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Read a checkpoint file and rebuild its model and tokenizers, ready to translate."""
    return model_from_checkpoint(read_checkpoint(path), device)


def read_card(path: str | Path) -> ModelCard:
    """A checkpoint's config and tokenizers, its weights left unread in the file."""
    return card_from_checkpoint(read_checkpoint(path, mmap=True))


def checkpoints_in(directory: str | Path) -> list[Path]:
    """The step_N.pt files of a run's checkpoint folder, oldest first."""
    found = [p for p in Path(directory).glob("step_*.pt") if p.stem[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[5:]))


def average_checkpoints(paths: list[str | Path]) -> dict:
    """A checkpoint whose weights are the mean of `paths` (same architecture and tokenizers); the last one's
    config and tokenizers are kept, and it carries no training state."""
    if not paths:
        raise UserError("no checkpoints to average")
    first = last = read_checkpoint(paths[0])
    sums = {name: tensor.double() for name, tensor in first["model"].items()}
    for path in paths[1:]:
        last = read_checkpoint(path)
        if last["config"]["model"] != first["config"]["model"] or last["tokenizers"] != first["tokenizers"]:
            raise UserError(f"{path} has a different model or tokenizer from {paths[0]}; average one run's checkpoints")
        for name, tensor in last["model"].items():
            sums[name] += tensor.double()
    averaged = {name: (total / len(paths)).to(first["model"][name].dtype) for name, total in sums.items()}
    return {**last, "model": averaged, "train_state": None, "metrics": {"averaged_from": [str(p) for p in paths]}}
