"""Learning-curve plot written next to metrics.jsonl at each validation."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(records: Sequence[dict], path: str | Path) -> None:
    """Train and validation loss against steps, with validation BLEU on a second axis."""
    steps = [r["step"] for r in records]
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(steps, [r["train_loss"] for r in records], label="train loss", color="tab:blue")
    loss_axis.plot(steps, [r["valid_loss"] for r in records], label="valid loss", color="tab:orange")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss (nats/token)")
    bleu_axis = loss_axis.twinx()
    bleu_axis.plot(steps, [r["bleu"] for r in records], label="valid BLEU", color="tab:green", marker=".")
    bleu_axis.set_ylabel("BLEU")
    lines = loss_axis.get_lines() + bleu_axis.get_lines()
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="center right")
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
