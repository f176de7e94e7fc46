"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers"): how much each
input token reaches the output of a position through *all* the layers, not one.

One layer's attention A_l (H, T, T) says how a position mixes the layer's inputs; but every layer also adds
its input back (the residual), so what flows from input j to output i is about ½ A + ½ I. Rollout multiplies
these through the stack:

    Â_l = rownorm( mean_h A_l[h] + I )          average the heads, add the identity, rows sum to 1 again
    R   = Â_L · … · Â_2 · Â_1                   (T, T): row i = how much of each input token reaches i

Each Â_l is row-stochastic, so R is too: every row sums to 1. For a ViT, the row of [CLS] (index 0) without
its own column, reshaped to the g × g patch grid, is the picture people draw over the image: which patches
the class decision is made of. ``cls_attention_grids`` gives the same [CLS] → patch row for every single
layer and head (what one layer alone says).

Plain torch, no matplotlib: the server uses it as well as the figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _stack(attentions: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Per-layer weights → (one tensor (B, L, H, T, T), whether the input had a batch dimension). Accepted: a
    list over layers of (B, H, T, T) or (H, T, T), or one tensor (B, L, H, T, T) or (L, H, T, T)."""
    if isinstance(attentions, torch.Tensor):
        stacked = attentions
    else:
        if len(attentions) == 0:
            raise ValueError("no attention layers given")
        stacked = torch.stack(list(attentions), dim=-4)  # layers go before (H, T, T)
    batched = stacked.dim() == 5
    stacked = stacked if batched else stacked.unsqueeze(0)
    if stacked.dim() != 5 or stacked.shape[-1] != stacked.shape[-2]:
        raise ValueError(f"expected per-layer attention (B, H, T, T) or (H, T, T), got {tuple(stacked.shape)}")
    return stacked, batched


def attention_rollout(attentions: Sequence[torch.Tensor] | torch.Tensor, residual: bool = True) -> torch.Tensor:
    """Rollout R (B, T, T) of per-layer attention weights, a list over layers of (B, H, T, T) (as
    ``ViT.forward(images, return_attention=True)`` returns them); (T, T) when the layers are (H, T, T).

    Heads are averaged; ``residual`` adds the identity (then rows are renormalised to sum to 1); the layers
    are multiplied first to last: R = Â_L ⋯ Â_1. Computed in float64, returned in the input's dtype."""
    stacked, batched = _stack(attentions)  # (B, L, H, T, T)
    dtype, t = stacked.dtype, stacked.shape[-1]
    layers = stacked.double().mean(dim=2)  # (B, L, T, T): heads averaged
    if residual:
        layers = layers + torch.eye(t, dtype=torch.float64, device=layers.device)
        layers = layers / layers.sum(dim=-1, keepdim=True)
    rollout = layers[:, 0]
    for layer in range(1, layers.shape[1]):
        rollout = layers[:, layer] @ rollout  # a later layer reads what the earlier ones produced
    rollout = rollout.to(dtype)
    return rollout if batched else rollout[0]


def patch_grid(row: torch.Tensor) -> torch.Tensor:
    """Weights over the N = g² patches (…, N) → (…, g, g), row-major as the ViT numbers them."""
    n = row.shape[-1]
    g = round(n**0.5)
    if g * g != n:
        raise ValueError(f"{n} patches do not form a square grid")
    return row.reshape(*row.shape[:-1], g, g)


def cls_rollout(attentions: Sequence[torch.Tensor] | torch.Tensor, residual: bool = True) -> torch.Tensor:
    """The rollout's [CLS] → patch row as the patch grid: (B, g, g), or (g, g) for unbatched input."""
    return patch_grid(attention_rollout(attentions, residual)[..., 0, 1:])


def cls_attention_grids(attentions: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """[CLS] → patch attention of every layer and head as grids: (B, L, H, g, g), or (L, H, g, g) for
    unbatched input. (The row of one layer alone; its [CLS] → [CLS] weight is left out, so a grid sums to
    1 minus that weight.)"""
    stacked, batched = _stack(attentions)
    grids = patch_grid(stacked[..., 0, 1:])  # (B, L, H, g, g)
    return grids if batched else grids[0]
