"""What a run keeps in its directory so that --resume continues it exactly: checkpoints (best, last, step_N),
the training state with every rank's RNG, and the metrics log that matches them."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from seq2seq import distributed
from seq2seq.checkpoint import make_checkpoint, read_checkpoint, remove_stale_temporaries, save_checkpoint
from seq2seq.config import Config
from seq2seq.distributed import World
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.plot import plot_learning_curve
from seq2seq.schedule import LRSchedule
from seq2seq.tokenizer import Tokenizer

# The trainer's logger: setup_logging gives it train.log and the progress-bar-safe stderr handler.
log = logging.getLogger("seq2seq.train")


@dataclass
class Progress:
    """Counters that, with the model, optimizer, schedule and RNG, make a run resumable exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_seconds: float = 0.0
    best_score: Optional[float] = None  # higher is better (negated loss when stopping on loss)
    best_step: int = 0
    stalled_validations: int = 0
    loss_sum: float = 0.0  # training loss since the last validation
    loss_tokens: int = 0
    history: list = field(default_factory=list)


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a run's checkpoints live."""
    return run_dir / "checkpoints"


def open_run(run_dir: Path, config: Config, resume: bool) -> Optional[dict]:
    """Rank 0's look at the run directory: the checkpoint to resume from (None for a new run), after
    refusing to overwrite a run and removing the temporaries a killed run left."""
    payload = _resume_payload(checkpoint_dir(run_dir), config) if resume else None
    _check_run_dir(run_dir, payload)
    write_config(config, run_dir / "config.yaml")  # only now: a refused run leaves the run's own config alone
    return payload


def write_config(config: Config, path: Path) -> None:
    """The run's config as YAML, in section order, so that `seq2seq train` takes it back as it is."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _resume_payload(ckpt_dir: Path, config: Config) -> Optional[dict]:
    """last.pt, checked to hold a training state and the same model, tokenizer and data sections as `config`."""
    path = ckpt_dir / "last.pt"
    if not path.exists():
        log.info("--resume: no checkpoint in %s yet, starting a new run", ckpt_dir)
        return None
    payload = read_checkpoint(path)
    if payload.get("train_state") is None:
        raise UserError(f"{path} has no training state to resume from")
    for section in ("model", "tokenizer", "data"):
        if payload["config"][section] != getattr(config, section).model_dump(mode="json"):
            raise UserError(f"--resume: the '{section}' section differs from the checkpoint's; use a new --run-dir")
    return payload


def initial_checkpoint(config: Config) -> Optional[dict]:
    """The checkpoint `train.init_from` names (None when it names none), checked to be one."""
    if config.train.init_from is None:
        return None
    payload = read_checkpoint(config.train.init_from)
    if config.data.src_lang != payload["languages"]["source"] or config.data.tgt_lang != payload["languages"]["target"]:
        raise UserError(f"train.init_from: {config.train.init_from} translates {payload['languages']['source']}→"
                        f"{payload['languages']['target']}, this config {config.data.src_lang}→{config.data.tgt_lang}")
    return payload


def load_initial_weights(model: torch.nn.Module, payload: dict, config: Config) -> None:
    """Start `model` from an init_from checkpoint's weights; a different architecture is a UserError."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError:
        theirs, ours = payload["config"]["model"], config.model.model_dump(mode="json")
        differing = ", ".join(f"{k}: {theirs.get(k)} there, {ours[k]} here" for k in ours if theirs.get(k) != ours[k])
        raise UserError(f"train.init_from: {config.train.init_from} holds another architecture ({differing}); "
                        "set the model section to the checkpoint's") from None
    log.info("weights and tokenizers from %s", config.train.init_from)


def _check_run_dir(run_dir: Path, resume_payload: Optional[dict]) -> None:
    """Refuse to overwrite a run; remove temporaries a killed run left."""
    ckpt_dir = checkpoint_dir(run_dir)
    if resume_payload is None and (ckpt_dir / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
    for stale in remove_stale_temporaries(ckpt_dir) if ckpt_dir.is_dir() else []:
        log.info("removed %s, left half-written by an interrupted run", stale.name)


class RunState:
    """Saves and restores what --resume needs: model, optimizer, schedule, scaler, progress and RNG.

    Under torchrun every rank calls `restore` and `save` (each has its own RNG); only rank 0 writes files."""

    def __init__(self, *, config: Config, run_dir: Path, world: World, device: torch.device, model: Seq2Seq,
                 optimizer: torch.optim.Optimizer, schedule: LRSchedule, scaler: torch.amp.GradScaler,
                 tokenizers: tuple[Tokenizer, Tokenizer]):
        self.config, self.run_dir, self.world, self.device = config, run_dir, world, device
        self.model, self.optimizer, self.schedule, self.scaler = model, optimizer, schedule, scaler
        self.tokenizers = tokenizers
        self.ckpt_dir = checkpoint_dir(run_dir)
        self.saved_step: Optional[int] = None  # the step last.pt holds, once one was read or written

    @property
    def on_cuda(self) -> bool:
        """Whether training runs on CUDA: only then does a CUDA RNG draw dropout masks worth saving."""
        return self.device.type == "cuda"

    # --- starting -------------------------------------------------------------------------------------
    def start(self) -> Progress:
        """A new run; one killed before its first checkpoint starts over, so what it logged is forgotten."""
        self._rewrite_metrics([])
        return Progress()

    def restore(self, payload: dict) -> Progress:
        """Load a resume payload's weights and training state into the run; return its progress."""
        state = payload["train_state"]
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        self._restore_rng(state["rng"], progress.step)
        # Validations logged after the checkpoint was written are replayed, so drop them from the file.
        self._rewrite_metrics(progress.history)
        self.saved_step = progress.step
        log.info("resumed at step %d (epoch %d, batch %d)", progress.step, progress.epoch, progress.batch_in_epoch)
        return progress

    def _restore_rng(self, rng: dict, step: int) -> None:
        if self.world.distributed:
            self._restore_rank_rng(rng.get("ranks"), step)
            return
        torch.set_rng_state(rng["cpu"])
        if self.on_cuda and rng.get("cuda"):  # a checkpoint written on a GPU may be resumed on a CPU, and back
            torch.cuda.set_rng_state_all(rng["cuda"])

    def _restore_rank_rng(self, saved: Optional[list], step: int) -> None:
        """This rank's own RNG state, saved by the same number of ranks; else a fresh per-rank seed."""
        if saved is None or len(saved) != self.world.size:
            log.warning("--resume: the checkpoint was written by %s rank(s), not %d: dropout draws are not replayed",
                        len(saved) if saved else 1, self.world.size)
            torch.manual_seed(self.config.seed * self.world.size + self.world.rank + step)
            return
        mine = saved[self.world.rank]
        torch.set_rng_state(mine["cpu"])
        if self.on_cuda and mine.get("cuda") is not None:
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    # --- saving ---------------------------------------------------------------------------------------
    def save(self, progress: Progress, best: bool = False, step_copy: bool = False) -> None:
        """Save last.pt; at validations also best.pt (when improved) and step_N.pt, keeping the newest
        `keep_last` of those. last.pt goes last: it is what --resume reads, so once it names this step
        every other file of this step is already complete, and a crash before it replays the step.
        Under torchrun every rank calls this (for the RNG states) and only rank 0 writes."""
        train_state = self._train_state(progress)
        if not self.world.is_main:
            self.saved_step = progress.step
            return
        if best:
            save_checkpoint(self._checkpoint(metrics=progress.history[-1]), self.ckpt_dir / "best.pt")
        payload = self._checkpoint(train_state, progress.history[-1] if progress.history else None)
        if step_copy:
            save_checkpoint(payload, self.ckpt_dir / f"step_{progress.step}.pt")
        save_checkpoint(payload, self.ckpt_dir / "last.pt")
        self.saved_step = progress.step
        if step_copy:
            self._remove_old_step_copies()

    def _checkpoint(self, train_state: Optional[dict] = None, metrics: Optional[dict] = None) -> dict:
        return make_checkpoint(self.config, self.model, *self.tokenizers, train_state, metrics)

    def _remove_old_step_copies(self) -> None:
        old = sorted(self.ckpt_dir.glob("step_*.pt"), key=lambda f: int(f.stem.split("_")[1]))
        for stale in old[: -self.config.train.keep_last]:
            stale.unlink()

    def _train_state(self, progress: Progress) -> dict:
        """Optimizer, schedule, scaler, progress and RNG; under torchrun it gathers every rank's RNG, so all ranks
        call it."""
        rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if self.on_cuda:
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.world.distributed:
            rng["ranks"] = distributed.gather_objects(self.world, self._rank_rng())
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "progress": asdict(progress), "rng": rng}

    def _rank_rng(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.on_cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    # --- the metrics log --------------------------------------------------------------------------------
    def log_metrics(self, record: dict, history: list) -> None:
        """Append a validation record to metrics.jsonl and redraw the learning curve from `history`."""
        if not self.world.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        plot_learning_curve(history, self.run_dir / "learning_curve.png")

    def _rewrite_metrics(self, history: list) -> None:
        """metrics.jsonl holding exactly the validations of `history`."""
        if self.world.is_main:
            (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
