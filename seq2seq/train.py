"""Training: the loop, validation and early stopping. The data is seq2seq.prepare's; the step itself is
seq2seq.step's; checkpoints, RNG state and exact resume are seq2seq.run_state's."""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional

import sacrebleu
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seq2seq import distributed
from seq2seq.allocator import keep_large_blocks
from seq2seq.batching import Batch, TrainingPairs, prefetched
from seq2seq.checkpoint import CheckpointWriteError
from seq2seq.config import Config, DecodeConfig
from seq2seq.distributed import SINGLE, World
from seq2seq.errors import UserError
from seq2seq.faults import fault_point
from seq2seq.model import Seq2Seq, build_model
from seq2seq.precision import mixed_precision_dtype
from seq2seq.prepare import ValidationSet, prepare_data
from seq2seq.run_state import RunState, initial_checkpoint, load_initial_weights, open_run
from seq2seq.schedule import LRSchedule
from seq2seq.step import TrainingStep, make_optimizer, make_scaler, token_loss_sum
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import resolve_device, translate_texts

log = logging.getLogger("seq2seq.train")


@torch.no_grad()
def validation_loss(model: Seq2Seq, data: TrainingPairs, device: torch.device) -> float:
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
    """Owns one run's loop: data, model, schedule and progress; `run()` trains until a stop condition.
    The step is a TrainingStep's; checkpoints, RNG and the metrics log are a RunState's."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False, world: World = SINGLE):
        self.config, self.run_dir, self.world = config, run_dir, world
        self.created = time.time()
        self.device = distributed.start(world, resolve_device(config.train.device))
        torch.set_num_threads(distributed.default_threads(world, config.train.threads))
        keep_large_blocks()
        self.initial: Optional[dict] = None  # train.init_from's checkpoint, on rank 0 until its weights are loaded
        resume_payload = self._load(resume)
        torch.manual_seed(config.seed)
        vocab_sizes = (self.data.src_tokenizer.vocab_size, self.data.tgt_tokenizer.vocab_size)
        self.model = build_model(config.model, *vocab_sizes).to(self.device)
        if self.initial:  # rank 0 only: DDP gives the other ranks rank 0's weights
            load_initial_weights(self.model, self.initial, config)
            self.initial = None
        if world.distributed:  # different dropout on each rank; the model above is the same on all
            torch.manual_seed(config.seed * world.size + world.rank)
        self.schedule = LRSchedule(config.train)
        self.batches_per_epoch = max(1, len(self.data.train.epoch_batches(0)))  # near enough for every epoch
        amp_dtype = mixed_precision_dtype(config.train.amp, self.device)
        optimizer, scaler = make_optimizer(self.model, config.train, self.device), make_scaler(amp_dtype)
        self.run_state = RunState(config=config, run_dir=run_dir, world=world, device=self.device, model=self.model,
                                  optimizer=optimizer, schedule=self.schedule, scaler=scaler,
                                  tokenizers=(self.data.src_tokenizer, self.data.tgt_tokenizer))
        self.progress = self.run_state.restore(resume_payload) if resume_payload else self.run_state.start()
        # Wrapped after the restore, so DDP starts from the restored weights.
        self.step = TrainingStep(model=self.model, network=self._wrap_for_ranks(), optimizer=optimizer, scaler=scaler,
                                 train_config=config.train, device=self.device, amp_dtype=amp_dtype)
        log.info("model: %.2fM parameters on %s%s", sum(p.numel() for p in self.model.parameters()) / 1e6, self.device,
                 f", rank 0 of {world.size}" if world.distributed else "")

    # --- set-up -----------------------------------------------------------------------------------
    def _load(self, resume: bool) -> Optional[dict]:
        """Set self.data; return the checkpoint to resume from, if any.

        Every rank continues from rank 0's checkpoint and tokenizers (read or trained once, on rank 0),
        so other nodes need neither the run directory nor a SentencePiece training of their own."""
        shared = self._load_on_main(resume) if self.world.is_main else None
        resume_payload, protos = distributed.broadcast_from_main(self.world, shared, self.device)
        if not self.world.is_main:
            self.data = prepare_data(self.config, (Tokenizer(protos[0]), Tokenizer(protos[1])), progress=False)
        return resume_payload

    def _load_on_main(self, resume: bool) -> tuple[Optional[dict], tuple[bytes, bytes]]:
        """Rank 0: open the run directory, prepare the data; return the resume payload and tokenizer protos."""
        resume_payload = open_run(self.run_dir, self.config, resume)
        # A resumed run restores its own weights; a new one may start from another run's (train.init_from).
        self.initial = None if resume_payload else initial_checkpoint(self.config)
        tokenizers = None
        source = resume_payload or self.initial
        if source:
            protos = source["tokenizers"]
            tokenizers = (Tokenizer(protos["source"]), Tokenizer(protos["target"]))
        self.data = prepare_data(self.config, tokenizers)
        return resume_payload, (self.data.src_tokenizer.model_proto, self.data.tgt_tokenizer.model_proto)

    def _wrap_for_ranks(self) -> torch.nn.Module:
        """The module the training step runs: under torchrun, DDP (gradients averaged across ranks)."""
        if not self.world.distributed:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

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
        first_step = p.step
        stop_reason = None
        while stop_reason is None:
            steps = self.data.train.iterate_steps(p.epoch, p.batch_in_epoch, t.accumulate,
                                                  self.world.rank, self.world.size)
            for position, batches in prefetched(steps, t.prefetch_batches):
                step_start = time.time()
                loss_sum, tokens = self._train_step(batches)
                loss_sum, elapsed = self._agree(loss_sum, time.time() - started)
                window_time += time.time() - step_start
                if p.step == first_step:  # how long a start (or resume) takes before training runs
                    log.info("first step done, %.1f s after training started", time.time() - self.created)
                p.step, p.batch_in_epoch = p.step + 1, position
                p.loss_sum, p.loss_tokens = p.loss_sum + loss_sum, p.loss_tokens + tokens
                window_tokens += tokens
                p.elapsed_seconds = elapsed
                bar.update(1)
                bar.set_postfix(epoch=p.epoch + 1, loss=f"{loss_sum / tokens:.3f}",
                                tok_s=f"{window_tokens / window_time:.0f}", refresh=False)
                stop_reason = self._budget_exhausted()
                if p.step % t.valid_every == 0 or stop_reason:
                    stop_reason = self._validate(window_tokens / max(window_time, 1e-9)) or stop_reason
                    window_tokens, window_time = 0, 0.0
                elif p.step % (t.save_every or t.valid_every) == 0:
                    self.run_state.save(p)
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
        """One optimizer step over this rank's micro-batches at the schedule's rate; returns this rank's
        loss sum and the target tokens of the whole step (all micro-batches of all ranks)."""
        self.step.set_lr(self.schedule.lr(self.progress.step, self._budget_used()))
        tokens = self._step_tokens(batches)
        # The gradient is that of the loss per token of the whole step, as one large batch would give;
        # DDP averages gradients over ranks, so each rank's share is scaled up by the number of ranks.
        return self.step(batches, tokens / self.world.size), tokens

    def _step_tokens(self, batches: list[Batch]) -> int:
        """Target tokens in this step's micro-batches, summed over ranks."""
        local = sum(batch.num_tgt_tokens for batch in batches)
        return int(distributed.sum_over_ranks(self.world, [float(local)], self.device)[0])

    # --- validation ---------------------------------------------------------------------------------
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
        elif self.schedule.counts_stalls(self._budget_used()):
            p.stalled_validations += 1
        log.info("step %d epoch %.2f | train %.3f valid %.3f ppl %.2f BLEU %.2f | lr %.2e | %.0f tok/s%s",
                 p.step, record["epoch"], record["train_loss"], record["valid_loss"], record["valid_ppl"],
                 record["bleu"], record["lr"], tokens_per_sec, " | new best" if improved else "")
        self.run_state.log_metrics(record, p.history)
        self.run_state.save(p, best=improved, step_copy=True)
        if t.early_stopping.patience is not None and p.stalled_validations >= t.early_stopping.patience:
            return f"early stopping: {t.early_stopping.metric} did not improve for {p.stalled_validations} validations"
        return None

    def _measure(self, tokens_per_sec: float) -> dict:
        """Validation loss and greedy BLEU on every validation set: the record that metrics.jsonl gets.
        The first set's figures are also the record's own `valid_loss` and `bleu`, which early stopping reads."""
        p = self.progress
        scores = {valid.name: self._score(valid) for valid in self.data.valid}
        first = scores[self.data.valid[0].name]
        batches_in_epoch = max(1, len(self.data.train.epoch_batches(p.epoch)))
        return {
            "step": p.step, "epoch": round(p.epoch + p.batch_in_epoch / batches_in_epoch, 3),
            "train_loss": p.loss_sum / max(p.loss_tokens, 1), "valid_loss": first["valid_loss"],
            "valid_ppl": math.exp(min(first["valid_loss"], 50.0)), "bleu": first["bleu"],
            "lr": self.schedule.lr(p.step, self._budget_used()), "tokens_per_sec": round(tokens_per_sec, 1),
            "elapsed_sec": round(p.elapsed_seconds, 1), "valid_sets": scores,
        }

    def _score(self, valid: ValidationSet) -> dict:
        valid_loss = validation_loss(self.model, valid.pairs, self.device)
        fault_point("validation")
        options = DecodeConfig(beam_size=1, max_length_ratio=self.config.train.valid_max_length_ratio)
        hyps = translate_texts(self.model, self.data.src_tokenizer, self.data.tgt_tokenizer, valid.sources,
                               device=self.device, options=options)
        bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [valid.references]).score
        return {"valid_loss": valid_loss, "bleu": bleu}

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
        handler: logging.Handler = logging.StreamHandler()
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
    state = trainer.run_state
    kept = (f"the last good checkpoint ({state.ckpt_dir / 'last.pt'}, step {state.saved_step}) is kept"
            if state.saved_step is not None else "no checkpoint had been written yet")
    return f"training stopped at step {trainer.progress.step}: {reason}; {kept}"
