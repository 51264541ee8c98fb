"""The training step, once: forward under autocast, label-smoothed loss, backward over accumulated
micro-batches, unscaling, clipping and the optimizer update. The trainer runs it; the benchmarks time it."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager, Optional

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from seq2seq.batching import Batch
from seq2seq.config import TrainConfig
from seq2seq.faults import fault_point
from seq2seq.model import Seq2Seq, fused
from seq2seq.precision import autocast
from seq2seq.tokenizer import PAD


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over non-padding target tokens, in float. logits: (B, T, V), targets: (B, T)."""
    logits, targets = logits.flatten(0, 1), targets.flatten()
    if fused.applies(logits):  # one pass each way over the logits, in their dtype (BENCHMARKS.md)
        return fused.smoothed_cross_entropy_sum(logits, targets, label_smoothing, PAD)
    return F.cross_entropy(logits.float(), targets, ignore_index=PAD, label_smoothing=label_smoothing,
                           reduction="sum")


def fused_adam_available(device: torch.device) -> bool:
    """Fused Adam runs on CUDA, and on CPU from torch 2.4 (`torch.__version__` compares as a version)."""
    return device.type == "cuda" or torch.__version__ >= "2.4"


def make_optimizer(model: torch.nn.Module, train_config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over the model's parameters as `train_config` sets them, fused where available."""
    cls = torch.optim.AdamW if train_config.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel updates each parameter in one pass instead of foreach's several; the figures are in
    # BENCHMARKS.md (second round, python -m bench.micro).
    return cls(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay,
               fused=fused_adam_available(device))


def make_scaler(amp_dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A loss scaler that acts only under fp16, whose narrow range lets small gradients underflow (bf16's does not)."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)


class TrainingStep:
    """One optimizer step over a list of micro-batches, as the trainer runs it."""

    def __init__(self, *, model: Seq2Seq, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, train_config: TrainConfig, device: torch.device,
                 amp_dtype: Optional[torch.dtype]):
        self.model, self.network = model, network  # network: the model, or DDP around it under torchrun
        self.optimizer, self.scaler = optimizer, scaler
        self.config, self.device, self.amp_dtype = train_config, device, amp_dtype

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next update (the schedule's, which the trainer owns)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def autocast(self) -> ContextManager:
        """Mixed precision as `train.amp` chose it for this device; nothing under fp32."""
        return autocast(self.device, self.amp_dtype)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Summed label-smoothed loss of `logits` against the batch's targets."""
        return token_loss_sum(logits, batch.tgt_out, self.config.label_smoothing)

    def forward_loss(self, batch: Batch) -> torch.Tensor:
        """Summed (label-smoothed) loss of one micro-batch, under autocast when mixed precision is on."""
        with self.autocast():
            logits = self.network(batch.src, batch.src_lengths, batch.tgt_in, self.config.scheduled_sampling)
            return self.loss(logits, batch)

    def zero_grad(self) -> None:
        """Forget the previous step's gradients."""
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, micro_loss: torch.Tensor, divisor: float) -> None:
        """Accumulate the gradient of `micro_loss / divisor` (scaled under fp16)."""
        self.scaler.scale(micro_loss / divisor).backward()

    def update(self) -> None:
        """Unscale, clip to `train.clip_norm`, step the optimizer and the scaler."""
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def __call__(self, batches: list[Batch], divisor: float) -> float:
        """Forward, backward and one update over `batches`, each micro-batch's loss divided by `divisor`
        (the step's target tokens, so the gradient is that of one large batch); returns the summed loss."""
        self.model.train()
        self.zero_grad()
        loss_sum = 0.0
        for index, batch in enumerate(batches):
            batch = batch.to(self.device)
            with self._syncing(last=index == len(batches) - 1):
                micro_loss = self.forward_loss(batch)
                self.backward(micro_loss, divisor)
            loss_sum += float(micro_loss.detach())
        fault_point("train-step")
        self.update()
        return loss_sum

    def _syncing(self, last: bool) -> ContextManager:
        """Under DDP, gradients are all-reduced on the last micro-batch only; the others accumulate locally."""
        if last or not isinstance(self.network, DistributedDataParallel):
            return nullcontext()
        return self.network.no_sync()
