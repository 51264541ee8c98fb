"""Training: data preparation, the step (teacher forcing, label smoothing, clipping), validation,
early stopping, checkpoints and exact resume."""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import sacrebleu
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seq2seq import distributed
from seq2seq.allocator import keep_large_blocks
from seq2seq.checkpoint import (CheckpointWriteError, make_checkpoint, read_checkpoint, remove_stale_temporaries,
                                save_checkpoint)
from seq2seq.config import Config, DecodeConfig
from seq2seq.data import PAD, Batch, ParallelDataset, clean_pairs, keep_pair, read_parallel
from seq2seq.distributed import SINGLE, World
from seq2seq.errors import UserError
from seq2seq.faults import fault_point
from seq2seq.model import Seq2Seq, build_model
from seq2seq.plot import plot_learning_curve
from seq2seq.precision import autocast, mixed_precision_dtype
from seq2seq.schedule import LRSchedule
from seq2seq.tokenizer import Tokenizer, train_tokenizers
from seq2seq.translate import resolve_device, translate_texts

log = logging.getLogger("seq2seq.train")


@dataclass
class PreparedData:
    train: ParallelDataset
    valid: ParallelDataset
    valid_src: list[str]
    valid_ref: list[str]
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer


def prepare_data(config: Config, tokenizers: Optional[tuple[Tokenizer, Tokenizer]] = None) -> PreparedData:
    """Read, clean, tokenize (training SentencePiece unless given) and length-filter the corpora."""
    d = config.data
    src, tgt = clean_pairs(*read_parallel(d.train, d.src_lang, d.tgt_lang))
    if d.max_pairs:
        src, tgt = src[: d.max_pairs], tgt[: d.max_pairs]
    if not src:
        raise UserError(f"no training pairs left in {d.train} after cleaning")
    src_tok, tgt_tok = tokenizers or train_tokenizers(src, tgt, config.tokenizer)
    src_ids, tgt_ids = src_tok.encode_batch(src), tgt_tok.encode_batch(tgt)
    kept = [i for i in range(len(src_ids)) if keep_pair(len(src_ids[i]), len(tgt_ids[i]), d.max_length, d.max_length_ratio)]
    log.info("training pairs: %d read, %d kept after length filtering", len(src_ids), len(kept))
    train = ParallelDataset([src_ids[i] for i in kept], [tgt_ids[i] for i in kept], config.train.batch_tokens, config.seed)

    valid_src, valid_ref = clean_pairs(*read_parallel(d.valid, d.src_lang, d.tgt_lang))
    if d.max_valid_pairs:
        valid_src, valid_ref = valid_src[: d.max_valid_pairs], valid_ref[: d.max_valid_pairs]
    if not valid_src:
        raise UserError(f"no validation pairs in {d.valid}")
    limit = 4 * d.max_length
    valid = ParallelDataset([s[:limit] for s in src_tok.encode_batch(valid_src)],
                            [t[:limit] for t in tgt_tok.encode_batch(valid_ref)], config.train.batch_tokens, config.seed)
    return PreparedData(train, valid, valid_src, valid_ref, src_tok, tgt_tok)


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


def fused_adam_available(device: torch.device) -> bool:
    """Fused Adam runs on CUDA, and on CPU from torch 2.4 (`torch.__version__` compares as a version)."""
    return device.type == "cuda" or torch.__version__ >= "2.4"


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over non-padding target tokens. logits: (B, T, V), targets: (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="sum")


@torch.no_grad()
def validation_loss(model: Seq2Seq, data: ParallelDataset, device: torch.device) -> float:
    """Mean negative log-likelihood per target token (no label smoothing)."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in data.ordered_batches():
        batch = batch.to(device)
        total += float(token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out))
        tokens += batch.num_tgt_tokens
    model.train()
    return total / max(tokens, 1)


class Trainer:
    """Owns one run: model, optimizer, schedule and progress; `run()` trains until a stop condition."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False, world: World = SINGLE):
        self.config, self.run_dir, self.world = config, run_dir, world
        self.ckpt_dir = run_dir / "checkpoints"
        self.device = distributed.start(world, resolve_device(config.train.device))
        torch.set_num_threads(distributed.default_threads(world, config.train.threads))
        keep_large_blocks()
        resume_payload = self._resume_payload() if resume and world.is_main else None
        if world.is_main:
            self._check_run_dir(resume_payload)
        tokenizers = None
        if resume_payload:
            tokenizers = (Tokenizer(resume_payload["tokenizers"]["source"]), Tokenizer(resume_payload["tokenizers"]["target"]))
        if world.is_main:
            self.data = prepare_data(config, tokenizers)
        # Every rank continues from rank 0's checkpoint and tokenizers (read or trained once, on rank 0),
        # so other nodes need neither the run directory nor a SentencePiece training of their own.
        resume_payload, protos = distributed.broadcast_from_main(
            world, (resume_payload, self._tokenizer_protos() if world.is_main else None), self.device)
        if not world.is_main:
            self.data = prepare_data(config, (Tokenizer(protos[0]), Tokenizer(protos[1])))
        self.saved_step: Optional[int] = resume_payload["train_state"]["progress"]["step"] if resume_payload else None
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, self.data.src_tokenizer.vocab_size, self.data.tgt_tokenizer.vocab_size).to(self.device)
        if world.distributed:  # different dropout on each rank; the model above is the same on all
            torch.manual_seed(config.seed * world.size + world.rank)
        self.optimizer = self._make_optimizer()
        self.schedule = LRSchedule(config.train)
        self.batches_per_epoch = max(1, len(self.data.train.epoch_batches(0)))  # near enough for every epoch
        self.progress = Progress()
        self.amp_dtype = mixed_precision_dtype(config.train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if resume_payload:
            self._restore(resume_payload)
        elif world.is_main:  # a run killed before its first checkpoint starts over: forget what it logged
            (run_dir / "metrics.jsonl").write_text("")
        self.network = self._wrap_for_ranks()
        log.info("model: %.2fM parameters on %s%s", sum(p.numel() for p in self.model.parameters()) / 1e6, self.device,
                 f", rank 0 of {world.size}" if world.distributed else "")

    # --- set-up -----------------------------------------------------------------------------------
    def _check_run_dir(self, resume_payload: Optional[dict]) -> None:
        """Refuse to overwrite a run; remove temporaries a killed run left."""
        if resume_payload is None and (self.ckpt_dir / "last.pt").exists():
            raise UserError(f"{self.run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
        for stale in remove_stale_temporaries(self.ckpt_dir) if self.ckpt_dir.is_dir() else []:
            log.info("removed %s, left half-written by an interrupted run", stale.name)

    def _tokenizer_protos(self) -> tuple[bytes, bytes]:
        return self.data.src_tokenizer.model_proto, self.data.tgt_tokenizer.model_proto

    def _wrap_for_ranks(self) -> torch.nn.Module:
        """The module the training step runs: under torchrun, DDP (gradients averaged across ranks)."""
        if not self.world.distributed:
            return self.model
        return DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        # The fused kernel updates each parameter in one pass: 15.8 ms unfused, 5.9 ms fused (python -m bench.micro).
        return cls(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=fused_adam_available(self.device))

    def _resume_payload(self) -> Optional[dict]:
        path = self.ckpt_dir / "last.pt"
        if not path.exists():
            log.info("--resume: no checkpoint in %s yet, starting a new run", self.ckpt_dir)
            return None
        payload = read_checkpoint(path)
        if payload.get("train_state") is None:
            raise UserError(f"{path} has no training state to resume from")
        for section in ("model", "tokenizer", "data"):
            if payload["config"][section] != getattr(self.config, section).model_dump(mode="json"):
                raise UserError(f"--resume: the '{section}' section differs from the checkpoint's; use a new --run-dir")
        return payload

    def _restore(self, payload: dict) -> None:
        state = payload["train_state"]
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        if self.world.distributed:
            self._restore_rank_rng(state["rng"].get("ranks"))
        else:
            torch.set_rng_state(state["rng"]["cpu"])
            if torch.cuda.is_available() and state["rng"].get("cuda"):
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        # Validations logged after the checkpoint was written are replayed, so drop them from the file.
        if self.world.is_main:
            (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.progress.history))
        log.info("resumed at step %d (epoch %d, batch %d)", self.progress.step, self.progress.epoch, self.progress.batch_in_epoch)

    def _restore_rank_rng(self, saved: Optional[list]) -> None:
        """This rank's own RNG state, saved by the same number of ranks; else a fresh per-rank seed."""
        if saved is None or len(saved) != self.world.size:
            log.warning("--resume: the checkpoint was written by %s rank(s), not %d: dropout draws are not replayed",
                        len(saved) if saved else 1, self.world.size)
            torch.manual_seed(self.config.seed * self.world.size + self.world.rank + self.progress.step)
            return
        mine = saved[self.world.rank]
        torch.set_rng_state(mine["cpu"])
        if self.device.type == "cuda" and mine.get("cuda") is not None:
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    def _rank_rng(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until max_steps / max_epochs / max_minutes or early stopping; return the last validation."""
        bar = tqdm(total=self.config.train.max_steps, initial=self.progress.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0,  # sparse in log files
                   disable=not self.world.is_main)
        try:
            stop_reason = self._train_until_stopped(bar)
        finally:
            bar.close()  # now, not at exit: an error's one line must come after the bar, not before it
        log.info("stopped: %s; best %s at step %d", stop_reason, self._best_text(), self.progress.best_step)
        return self.progress.history[-1]

    def _train_until_stopped(self, bar: tqdm) -> str:
        t = self.config.train
        p = self.progress
        started, window_tokens, window_time = time.time() - p.elapsed_seconds, 0, 0.0
        stop_reason = None
        while stop_reason is None:
            steps = self.data.train.iterate_steps(p.epoch, p.batch_in_epoch, t.accumulate, self.world.rank, self.world.size)
            for position, batches in steps:
                step_start = time.time()
                loss_sum, tokens = self._train_step(batches)
                loss_sum, elapsed = self._agree(loss_sum, time.time() - started)
                window_time += time.time() - step_start
                p.step, p.batch_in_epoch = p.step + 1, position
                p.loss_sum, p.loss_tokens = p.loss_sum + loss_sum, p.loss_tokens + tokens
                window_tokens += tokens
                p.elapsed_seconds = elapsed
                bar.update(1)
                bar.set_postfix(epoch=p.epoch + 1, loss=f"{loss_sum / tokens:.3f}", tok_s=f"{window_tokens / window_time:.0f}",
                                refresh=False)
                stop_reason = self._budget_exhausted()
                if p.step % t.valid_every == 0 or stop_reason:
                    stop_reason = self._validate(window_tokens / max(window_time, 1e-9)) or stop_reason
                    window_tokens, window_time = 0, 0.0
                elif p.step % (t.save_every or t.valid_every) == 0:
                    self._save_checkpoints()
                if stop_reason:
                    break
            else:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                if t.max_epochs and p.epoch >= t.max_epochs:
                    stop_reason = f"reached max_epochs={t.max_epochs}"
                    if not p.history or p.history[-1]["step"] != p.step:
                        self._validate(window_tokens / max(window_time, 1e-9))
        return stop_reason

    def _agree(self, loss_sum: float, elapsed: float) -> tuple[float, float]:
        """The loss summed over ranks, and rank 0's clock: every rank then takes the same stop decisions."""
        if not self.world.distributed:
            return loss_sum, elapsed
        total, main_elapsed = distributed.sum_over_ranks(self.world, [loss_sum, elapsed if self.world.is_main else 0.0],
                                                         self.device)
        return total, main_elapsed

    def _budget_exhausted(self) -> Optional[str]:
        t, p = self.config.train, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return f"reached max_steps={t.max_steps}"
        if t.max_minutes and p.elapsed_seconds >= 60 * t.max_minutes:
            return f"reached max_minutes={t.max_minutes}"
        return None

    def _budget_used(self) -> float:
        """The largest fraction spent of any budget set (steps, epochs, minutes), for time-aware schedules."""
        t, p = self.config.train, self.progress
        used = [0.0]
        if t.max_steps:
            used.append(p.step / t.max_steps)
        if t.max_minutes:
            used.append(p.elapsed_seconds / (60 * t.max_minutes))
        if t.max_epochs:
            used.append((p.epoch + p.batch_in_epoch / self.batches_per_epoch) / t.max_epochs)
        return min(1.0, max(used))

    def _train_step(self, batches: list[Batch]) -> tuple[float, int]:
        """One optimizer step over this rank's micro-batches; returns this rank's loss sum and the
        target tokens of the whole step (all micro-batches of all ranks)."""
        t = self.config.train
        batches = [batch.to(self.device) for batch in batches]
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(self.progress.step, self._budget_used())
        tokens = self._step_tokens(batches)
        # The gradient is that of the loss per token of the whole step, as one large batch would give;
        # DDP averages gradients over ranks, so each rank's share is scaled up by the number of ranks.
        divisor = tokens / self.world.size if self.world.distributed else tokens
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            with nullcontext() if last or not self.world.distributed else self.network.no_sync():
                micro_loss = self._forward_loss(batch)
                self.scaler.scale(micro_loss / divisor).backward()  # all-reduces gradients on the last one only
            loss_sum += float(micro_loss.detach())
        fault_point("train-step")
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_sum, tokens

    def _forward_loss(self, batch: Batch) -> torch.Tensor:
        """Summed (label-smoothed) loss of one micro-batch, under autocast when mixed precision is on."""
        t = self.config.train
        with autocast(self.device, self.amp_dtype):
            logits = self.network(batch.src, batch.src_lengths, batch.tgt_in, t.scheduled_sampling)
            return token_loss_sum(logits, batch.tgt_out, t.label_smoothing)

    def _step_tokens(self, batches: list[Batch]) -> int:
        """Target tokens in this step's micro-batches, summed over ranks."""
        local = sum(batch.num_tgt_tokens for batch in batches)
        if not self.world.distributed:
            return local
        return int(distributed.sum_over_ranks(self.world, [float(local)], self.device)[0])

    # --- validation and checkpoints ----------------------------------------------------------------
    def _validate(self, tokens_per_sec: float) -> Optional[str]:
        """Validate, log, plot, checkpoint; return a reason to stop early, if any.

        Under torchrun rank 0 validates while the others wait for its record, which every rank then
        applies alike (history, schedule, early stopping), so they keep taking the same decisions."""
        p, t = self.progress, self.config.train
        record = self._measure(tokens_per_sec) if self.world.is_main else None
        record = distributed.broadcast_from_main(self.world, record, self.device)
        p.loss_sum, p.loss_tokens = 0.0, 0
        p.history.append(record)
        score = record["bleu"] if t.early_stopping.metric == "bleu" else -record["valid_loss"]
        self.schedule.on_validation(score)
        improved = p.best_score is None or score > p.best_score
        if improved:
            p.best_score, p.best_step, p.stalled_validations = score, p.step, 0
        else:
            p.stalled_validations += 1
        log.info("step %d epoch %.2f | train %.3f valid %.3f ppl %.2f BLEU %.2f | lr %.2e | %.0f tok/s%s",
                 p.step, record["epoch"], record["train_loss"], record["valid_loss"], record["valid_ppl"], record["bleu"],
                 record["lr"], tokens_per_sec, " | new best" if improved else "")
        if self.world.is_main:
            self._write_metrics(record)
        self._save_checkpoints(best=improved, step_copy=True)
        if p.stalled_validations >= t.early_stopping.patience:
            return f"early stopping: {t.early_stopping.metric} did not improve for {p.stalled_validations} validations"
        return None

    def _measure(self, tokens_per_sec: float) -> dict:
        """Validation loss and greedy BLEU: the record that metrics.jsonl gets."""
        p, t = self.progress, self.config.train
        valid_loss = validation_loss(self.model, self.data.valid, self.device)
        fault_point("validation")
        hyps = translate_texts(self.model, self.data.src_tokenizer, self.data.tgt_tokenizer, self.data.valid_src,
                               device=self.device, options=DecodeConfig(beam_size=1, max_length_ratio=t.valid_max_length_ratio))
        bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [self.data.valid_ref]).score
        return {
            "step": p.step, "epoch": round(p.epoch + p.batch_in_epoch / max(1, len(self.data.train.epoch_batches(p.epoch))), 3),
            "train_loss": p.loss_sum / max(p.loss_tokens, 1), "valid_loss": valid_loss,
            "valid_ppl": math.exp(min(valid_loss, 50.0)), "bleu": bleu, "lr": self.schedule.lr(p.step, self._budget_used()),
            "tokens_per_sec": round(tokens_per_sec, 1), "elapsed_sec": round(p.elapsed_seconds, 1),
        }

    def _write_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        plot_learning_curve(self.progress.history, self.run_dir / "learning_curve.png")

    def _train_state(self) -> dict:
        """Optimizer, schedule, progress and RNG; under torchrun it gathers every rank's RNG, so all ranks call it."""
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.world.distributed:
            rng["ranks"] = distributed.gather_objects(self.world, self._rank_rng())
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "progress": asdict(self.progress), "rng": rng}

    def _save_checkpoints(self, best: bool = False, step_copy: bool = False) -> None:
        """Save last.pt; at validations also best.pt (when improved) and step_N.pt, keeping the newest
        `keep_last` of those. last.pt goes last: it is what --resume reads, so once it names this step
        every other file of this step is already complete, and a crash before it replays the step.
        Under torchrun every rank calls this (for the RNG states) and only rank 0 writes."""
        train_state = self._train_state()
        if not self.world.is_main:
            self.saved_step = self.progress.step
            return
        if best:
            save_checkpoint(make_checkpoint(self.config, self.model, self.data.src_tokenizer, self.data.tgt_tokenizer,
                                            metrics=self.progress.history[-1]), self.ckpt_dir / "best.pt")
        payload = make_checkpoint(self.config, self.model, self.data.src_tokenizer, self.data.tgt_tokenizer,
                                  train_state, self.progress.history[-1] if self.progress.history else None)
        if step_copy:
            save_checkpoint(payload, self.ckpt_dir / f"step_{self.progress.step}.pt")
        save_checkpoint(payload, self.ckpt_dir / "last.pt")
        self.saved_step = self.progress.step
        if step_copy:
            old = sorted(self.ckpt_dir.glob("step_*.pt"), key=lambda f: int(f.stem.split("_")[1]))
            for stale in old[: -self.config.train.keep_last]:
                stale.unlink()

    def _best_text(self) -> str:
        best = self.progress.best_score
        if best is None:
            return "n/a"
        return f"BLEU {best:.2f}" if self.config.train.early_stopping.metric == "bleu" else f"valid loss {-best:.3f}"


class _QuietFileHandler(logging.FileHandler):
    """train.log; when the disk is full the same lines still reach stderr, so a failed write is skipped
    instead of printing a logging traceback over the one clear error."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def setup_logging(run_dir: Path, world: World = SINGLE) -> None:
    """Log to run_dir/train.log and to stderr (through tqdm, so the progress bar stays intact).
    Under torchrun only rank 0 does; the other ranks print their warnings and errors to stderr."""
    class TqdmHandler(logging.Handler):
        def emit(self, record):
            tqdm.write(self.format(record))

    log.handlers.clear()
    log.propagate = False
    if not world.is_main:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {world.rank}] %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    for handler in (_QuietFileHandler(run_dir / "train.log", encoding="utf-8"), TqdmHandler()):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def train(config: Config, run_dir: Optional[str] = None, resume: bool = False) -> dict:
    """Train a model as configured; returns the last validation record.

    A write that fails (full disk, read-only run directory) stops training with one UserError line;
    checkpoints are replaced atomically, so the last good one stays and --resume continues from it.
    """
    path = Path(run_dir or config.run_dir)
    world = distributed.world_from_env()  # several ranks under torchrun; one otherwise
    try:
        setup_logging(path, world)
        if world.is_main:
            (path / "config.yaml").write_text(json.dumps(config.model_dump(mode="json"), indent=2), encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write to the run directory {path}: {err.strerror or err}") from None
    trainer: Optional[Trainer] = None
    finished = False
    try:
        trainer = Trainer(config, path, resume, world)
        record = trainer.run()
        finished = True
        return record
    except (CheckpointWriteError, OSError) as err:
        raise UserError(_stopped_message(trainer, err)) from None
    finally:
        distributed.stop(world, finished)


def _stopped_message(trainer: Optional[Trainer], err: OSError | CheckpointWriteError) -> str:
    """One line: where training stopped, why, and which checkpoint survives."""
    reason = str(err) if isinstance(err, CheckpointWriteError) else f"{err.strerror or err}: {err.filename}"
    if trainer is None:
        return f"training could not start: {reason}"
    kept = (f"the last good checkpoint ({trainer.ckpt_dir / 'last.pt'}, step {trainer.saved_step}) is kept"
            if trainer.saved_step is not None else "no checkpoint had been written yet")
    return f"training stopped at step {trainer.progress.step}: {reason}; {kept}"
