"""Dropout with cheap masks on a CPU (``Dropout``, and ``dropout`` for attention weights)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """x ⊙ m / (1 − p'), m from 16-bit halves of 32-bit random draws on a CPU (see ``Dropout``); ``F.dropout``
    elsewhere. Training only: the caller decides when to apply it."""
    if p == 0.0:
        return x
    if x.device.type != "cpu" or p == 1.0:
        return F.dropout(x, p, training=True)
    threshold = round(p * 65536)  # drop the halves below it, counted from −2¹⁵
    draws = torch.empty((x.numel() + 1) // 2, dtype=torch.int32, device=x.device).random_(-2**31, 2**31)
    halves = draws.view(torch.int16)[: x.numel()].view(x.shape)  # two masks per 32-bit draw
    scaled_mask = (halves >= threshold - 32768).to(x.dtype).mul_(65536 / (65536 - threshold))  # m / (1 − p')
    return x * scaled_mask


class Dropout(nn.Module):
    """Dropout(x) = x ⊙ m / (1 − p), m_i ~ Bernoulli(1 − p) independently (Srivastava et al., 2014); the
    identity in eval mode. Same distribution as ``nn.Dropout``, cheaper masks on a CPU.

    On a CPU, drawing the masks is most of dropout's cost (``bernoulli_`` spends ~8 ns an element; 17 masks
    were 11–19 % of a training step of the ``small`` model). Here every 32-bit random draw (all 32 bits:
    ``random_()`` without a range leaves the sign bit 0) gives two 16-bit halves, each kept when its value
    ≥ round(p · 2¹⁶) − 2¹⁵: P(keep) = 1 − p' with p' = round(p · 2¹⁶) / 2¹⁶ (within 8·10⁻⁶ of p), and the
    scale 1 / (1 − p') keeps E[Dropout(x)] = x exactly. 2.5× faster than ``F.dropout`` there (with the
    backward). On other devices ``F.dropout`` (a fused kernel) runs.
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return dropout(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
