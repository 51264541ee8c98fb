"""Checkpoints: one self-contained file, written atomically, loaded without executing pickled code."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from seq2seq.config import Config, config_from_dict
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1


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
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict:
    """Load and check a checkpoint file; anything else is a UserError with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parse failure of an untrusted file means 'not a checkpoint'
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a seq2seq checkpoint ({first_line[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a seq2seq checkpoint (no '{FORMAT}' marker)")
    if payload.get("version", 0) > VERSION:
        raise UserError(f"{path} was written by a newer version (format {payload['version']} > {VERSION})")
    return payload


@dataclass
class LoadedModel:
    config: Config
    model: Seq2Seq
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    metrics: dict[str, Any]


def model_from_checkpoint(payload: dict, device: torch.device | str = "cpu") -> LoadedModel:
    config = config_from_dict(payload["config"])
    src_tok = Tokenizer(payload["tokenizers"]["source"])
    tgt_tok = Tokenizer(payload["tokenizers"]["target"])
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size)
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    return LoadedModel(config, model, src_tok, tgt_tok, payload.get("metrics", {}))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Read a checkpoint file and rebuild its model and tokenizers, ready to translate."""
    return model_from_checkpoint(read_checkpoint(path), device)


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
