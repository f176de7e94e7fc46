"""Training losses. Label smoothing (Szegedy et al., 2016; the Transformer paper §5.4) lives here, not in the loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_nll(
    logits: torch.Tensor, target: torch.Tensor, pad_id: int | None, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed label-smoothed cross-entropy and summed plain NLL over non-pad targets, and their count.

    logits (B, T, V), target (B, T). Smoothing ε puts 1−ε on the true token and ε/V everywhere (§5.4).
    """
    log_probs = F.log_softmax(logits.reshape(-1, logits.shape[-1]).float(), dim=-1)  # (N, V), computed once
    flat_target = target.reshape(-1)
    keep = flat_target != pad_id if pad_id is not None else torch.ones_like(flat_target, dtype=torch.bool)
    nll_per_token = -log_probs.gather(1, flat_target.clamp(min=0)[:, None]).squeeze(1)  # (N,)
    smooth_per_token = -log_probs.mean(dim=-1)  # (N,) cross-entropy with the uniform distribution
    loss = ((1 - smoothing) * nll_per_token + smoothing * smooth_per_token)[keep].sum()
    return loss, nll_per_token.detach()[keep].sum(), int(keep.sum())
