"""Learning-curve plot written next to metrics.jsonl at each validation."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    import torch


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
    loss_axis.legend(lines, [str(line.get_label()) for line in lines], loc="center right")
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def plot_attention(source_pieces: Sequence[str], target_pieces: Sequence[str], attention: torch.Tensor,
                   path: str | Path) -> None:
    """Heatmap of one sentence's attention: target pieces (rows, EOS last) × source pieces (columns, EOS last)."""
    weights = attention.float().cpu().numpy()
    rows, cols = list(target_pieces) + ["</s>"], list(source_pieces) + ["</s>"]
    fig, axis = plt.subplots(figsize=(max(4.0, 0.35 * len(cols) + 1.5), max(3.0, 0.35 * len(rows) + 1.2)))
    axis.imshow(weights[: len(rows), : len(cols)], cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(rows)), rows, fontsize=8)
    axis.set_xlabel("source")
    axis.set_ylabel("translation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
