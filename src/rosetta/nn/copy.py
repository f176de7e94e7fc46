"""Copying from the source: the pointer-generator (See et al., 2017, "Get To The Point"), on a Transformer decoder.

At each output position t the decoder either generates a word from the vocabulary or copies a source token,
and mixes the two with a learned gate p_gen ∈ (0, 1):

    P(w) = p_gen · P_vocab(w) + (1 − p_gen) · Σ_{i : x_i = w} a_{t,i}

P_vocab is the usual softmax over the output layer; a_t is an attention distribution over the source positions
i (here: the last decoder layer's cross-attention, averaged over its heads, as fairseq's pointer-generator
Transformer does); x_i is the source token at position i. Source and target share one vocabulary (BERT2BERT's
WordPiece), so a copied token is a vocabulary id: no extended vocabulary for out-of-vocabulary words.

See et al. compute p_gen = σ(w_h·h*_t + w_s·s_t + w_x·x_t + b) from the context vector h*_t, the decoder state
s_t and the decoder input x_t. In a Transformer the decoder's output h_t already sums its input, its
self-attention and its cross-attention context (the residual stream), so the gate reads h_t alone:
p_gen = σ(w·h_t + b).

    CopyGate            h (B, T, D) → the gate's logit g (B, T, 1); p_gen = σ(g)
    copy_distribution   the mixture, as log-probabilities (B, T, V), computed in log space
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# log(0) for a token no source position holds: a finite floor, so that no −∞ · 0 makes a NaN gradient.
LOG_FLOOR = 1e-30


class CopyGate(nn.Module):
    """p_gen = σ(w·h_t + b): how much of position t's distribution is generated rather than copied.
    The bias starts at +2 (p_gen ≈ 0.88): a model warm-started from one that only generates first mostly
    generates, and learns where copying pays."""

    def __init__(self, d_model: int, initial_bias: float = 2.0):
        super().__init__()
        self.proj = nn.Linear(d_model, 1)
        self.initial_bias = initial_bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, self.initial_bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, D) → the gate's logit g (B, T, 1), p_gen = σ(g)."""
        return self.proj(hidden)


def copy_distribution(
    logits: torch.Tensor, gate: torch.Tensor, attention: torch.Tensor, src_ids: torch.Tensor
) -> torch.Tensor:
    """log P(w) = log(p_gen · softmax(logits)_w + (1 − p_gen) · Σ_{i: src_i = w} attention_i), in float32.

    logits (B, T, V) over the vocabulary; gate (B, T, 1), the logit of p_gen; attention (B, T, S), each row a
    distribution over the source positions (padding positions 0); src_ids (B, S) in the same vocabulary.
    Returns log-probabilities (B, T, V): each row sums to 1 (its log_softmax is itself, so losses and
    searches that take logits take these unchanged)."""
    b, t, v = logits.shape
    if attention.shape != (b, t, src_ids.shape[1]) or src_ids.shape[0] != b:
        raise ValueError(f"copy attention {tuple(attention.shape)} does not fit logits {tuple(logits.shape)} and "
                         f"source ids {tuple(src_ids.shape)}; expected (B, T, S) = ({b}, {t}, {src_ids.shape[1]})")
    gate = gate.float()
    generated = F.log_softmax(logits.float(), dim=-1) + F.logsigmoid(gate)  # log(p_gen · P_vocab)
    index = src_ids[:, None, :].expand(b, t, src_ids.shape[1])
    copied = torch.zeros(b, t, v, device=logits.device, dtype=torch.float32)
    copied = copied.scatter_add(2, index, attention.float())  # Σ_{i: src_i = w} a_{t,i}
    copied = torch.log(copied.clamp_min(LOG_FLOOR)) + F.logsigmoid(-gate)  # log((1 − p_gen) · P_copy)
    return torch.logaddexp(generated, copied)
