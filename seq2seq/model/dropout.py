"""Dropout whose mask comes from random bytes: several times cheaper than `nn.Dropout` on a CPU.

torch draws a CPU dropout mask one Bernoulli sample per element, which made dropout a visible share of a
training step (the figures: BENCHMARKS.md, `python -m bench.micro`). Here one 64-bit draw gives the mask of 8 elements:
each random byte is compared with round(p · 256), so the rate is p to the nearest 1/256 (0.3 → 0.3008;
at most 255/256, so something is always kept), and the kept values are scaled by the exact inverse of
the kept fraction, keeping the expectation.
It draws from torch's own generator, so seeding and resuming replay it like any other dropout.
"""
from __future__ import annotations

import torch
from torch import nn

_LEVELS = 256  # one byte per element


class ByteDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.threshold = min(round(p * _LEVELS), _LEVELS - 1)  # a byte below this drops its element
        self.scale = _LEVELS / (_LEVELS - self.threshold)

    @property
    def p(self) -> float:
        """The rate actually applied: the configured one to the nearest 1/256."""
        return self.threshold / _LEVELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        return x * self.mask_like(x)

    def mask_like(self, x: torch.Tensor) -> torch.Tensor:
        """0 or 1/(1-p) per element of x, in x's dtype and device."""
        n = x.numel()
        words = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device)
        words.random_(-(2**63), 2**63 - 1)  # the full 64-bit range: 8 uniform bytes per word
        random_bytes = words.view(torch.uint8)[:n].view(x.shape)
        return random_bytes.ge_(self.threshold).to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"
