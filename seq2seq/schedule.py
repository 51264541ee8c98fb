"""Learning-rate schedule: linear warm-up, then constant, plateau (lower when validation stalls), step decay,
or cosine annealing to the end of the training budget."""
from __future__ import annotations

import math

from seq2seq.config import TrainConfig


class LRSchedule:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.stalled = 0

    def lr(self, step: int, budget_used: float = 0.0) -> float:
        """The rate for `step`; `budget_used` (0..1) is how much of the step/epoch/time budget is spent."""
        c = self.config
        warmup = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        decay = c.decay_factor ** (step // c.decay_every) if c.schedule == "decay" else 1.0
        rate = c.lr * warmup * decay * self.plateau_scale
        if c.schedule == "cosine":
            annealed = min(1.0, max(0.0, (budget_used - c.anneal_start) / (1.0 - c.anneal_start)))
            rate = c.min_lr + (rate - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * annealed))
        return max(c.min_lr, rate)

    def counts_stalls(self, budget_used: float) -> bool:
        """Whether a validation without improvement counts towards early stopping now: not in a cosine schedule's
        full-rate phase, where a plateau is expected and the annealing still to come is what the budget is for."""
        return self.config.schedule != "cosine" or budget_used >= self.config.anneal_start

    def on_validation(self, score: float) -> None:
        """Record a validation score (higher is better); on a plateau, lower the rate."""
        if self.config.schedule != "plateau":
            return
        if self.best is None or score > self.best:
            self.best, self.stalled = score, 0
            return
        self.stalled += 1
        if self.stalled > self.config.plateau_patience:
            self.plateau_scale *= self.config.decay_factor
            self.stalled = 0

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "stalled": self.stalled}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale, self.best, self.stalled = state["plateau_scale"], state["best"], state["stalled"]
