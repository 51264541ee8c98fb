"""Learning-rate schedule: linear warm-up, then constant, plateau (lower when validation stalls) or step decay."""
from __future__ import annotations

from seq2seq.config import TrainConfig


class LRSchedule:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.stalled = 0

    def lr(self, step: int) -> float:
        c = self.config
        warmup = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        decay = c.decay_factor ** (step // c.decay_every) if c.schedule == "decay" else 1.0
        return max(c.min_lr, c.lr * warmup * decay * self.plateau_scale)

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
